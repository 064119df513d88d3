from django.urls import path

from streams_admin import consumers, stats

websocket_urlpatterns = [
    path("ws/tail/", consumers.TailConsumer.as_asgi()),
    path("ws/stats/", stats.StatsConsumer.as_asgi()),
]
