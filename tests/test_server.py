"""Server detection: flavour, version, and the stream features each version has."""

from __future__ import annotations

import pytest

from streams_admin.redis import server_from_info
from streams_admin.streams import server


@pytest.mark.parametrize(
    ("info", "shown", "lag", "inactive"),
    [
        ({"redis_version": "6.2.14"}, "Redis 6.2.14", False, False),
        ({"redis_version": "7.0.15"}, "Redis 7.0.15", True, False),
        ({"redis_version": "7.2.5"}, "Redis 7.2.5", True, True),
        ({"redis_version": "8.2.1"}, "Redis 8.2.1", True, True),
        ({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "8.1.1"},
         "Valkey 8.1.1", True, True),
    ],
)
def test_features_follow_the_version(info, shown, lag, inactive) -> None:
    detected = server_from_info(info)
    assert f"{detected.flavour} {detected.version_text}" == shown
    assert (detected.has_lag, detected.has_inactive) == (lag, inactive)


def test_the_real_server_is_detected(r) -> None:
    detected, info = server(), r.info()
    valkey = "valkey_version" in info
    assert detected.flavour == ("Valkey" if valkey else "Redis")
    assert detected.version_text == info["valkey_version" if valkey else "redis_version"]
