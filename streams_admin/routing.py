from typing import Any

from django.urls import path

from streams_admin import consumers, stats
from streams_admin.targets import socket

# Django's path() is typed for views; Channels' URLRouter takes ASGI apps all the same.
# /t/NAME/ws/...: the sockets of target NAME, whose pages' URLs carry it; /ws/...: the default's.
websocket_urlpatterns: list[Any] = [
    path("ws/tail/", socket(consumers.TailConsumer.as_asgi())),
    path("ws/stats/", socket(stats.StatsConsumer.as_asgi())),
    path("t/<str:target>/ws/tail/", socket(consumers.TailConsumer.as_asgi())),
    path("t/<str:target>/ws/stats/", socket(stats.StatsConsumer.as_asgi())),
]
