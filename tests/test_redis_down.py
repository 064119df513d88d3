"""Redis unreachable or slow: every page answers fast with a banner and a retry."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.redis_server import free_port

PAGES = ["/", "/streams/s/", "/streams/s/?q=x", "/streams/s/groups/g/", "/streams/s/entries/1-0/",
         "/tail/", "/dead-letters/"]


@pytest.mark.parametrize("url", PAGES)
def test_redis_down_gives_the_banner(viewer_client, settings, url: str) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    response = viewer_client.get(url)
    assert time.monotonic() - started < 5
    assert response.status_code == 503
    body = response.content.decode()
    assert "Redis is not answering" in body and "Retry" in body


def test_slow_redis_times_out_into_the_banner(viewer_client, settings) -> None:
    """A server that accepts connections but never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    settings.REDIS_URL = f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    settings.STREAMS_ADMIN = {"SOCKET_TIMEOUT": 0.3}
    try:
        response = viewer_client.get("/")
    finally:
        listener.close()
    assert response.status_code == 503
    assert "Redis is not answering" in response.content.decode()


def test_the_page_works_again_when_redis_is_back(viewer_client, r, redis_server) -> None:
    r.xadd("s", {"a": "1"})
    redis_server.stop()
    assert viewer_client.get("/").status_code == 503
    redis_server.start()
    r.xadd("s", {"a": "1"})
    assert viewer_client.get("/").status_code == 200
