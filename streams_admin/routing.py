from typing import Any

from django.urls import path

from streams_admin import consumers, stats

# Django's path() is typed for views; Channels' URLRouter takes it with ASGI apps all the same.
websocket_urlpatterns: list[Any] = [
    path("ws/tail/", consumers.TailConsumer.as_asgi()),  # type: ignore[arg-type]
    path("ws/stats/", stats.StatsConsumer.as_asgi()),  # type: ignore[arg-type]
]
