from django.urls import path

from streams_admin import consumers

websocket_urlpatterns = [
    path("ws/tail/", consumers.TailConsumer.as_asgi()),
    path("ws/stats/", consumers.StatsConsumer.as_asgi()),
]
