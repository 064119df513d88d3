"""READ: each target's status for the targets page: up or down (and why), server, latency.

Every target is asked at once, each in a thread of its own, and the page waits PROBE_WAIT at
most: a target that hangs is "no answer" while the others show. Each uses its target's
cached client, so the page opens no connections a target's other pages would not.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

from streams_admin import conf, targets
from streams_admin.redis import Server, client, server

_probes = ThreadPoolExecutor(max_workers=8, thread_name_prefix="target-probe")


@dataclass(frozen=True)
class TargetStatus:
    target: targets.Target
    reason: str = ""  # why it is down; "" when up
    server: Server | None = None
    latency_ms: float | None = None  # one PING, round trip
    key_pattern: str = "*"  # the streams it covers

    @property
    def up(self) -> bool:
        return self.server is not None


def probe(target: targets.Target) -> TargetStatus:
    with targets.serving(target):
        pattern = conf.get("KEY_PATTERN")
        try:
            found = server()  # INFO: flavour and version, and a connection made for the PING
            start = time.perf_counter()
            client().ping()
            latency = (time.perf_counter() - start) * 1000
        except Exception as exc:  # noqa: BLE001 (whatever failed is this target's status)
            return TargetStatus(target, reason=str(exc) or type(exc).__name__,
                                key_pattern=pattern)
    return TargetStatus(target, server=found, latency_ms=latency, key_pattern=pattern)


def probe_wait() -> float:
    """Seconds the page waits for all: a connection and one command's timeout."""
    return conf.get("CONNECT_TIMEOUT") + conf.get("SOCKET_TIMEOUT")


def statuses(shown: list[targets.Target]) -> list[TargetStatus]:
    futures = [_probes.submit(probe, target) for target in shown]
    wait(futures, timeout=probe_wait())
    return [future.result() if future.done()
            else TargetStatus(target, reason=f"no answer within {probe_wait():g} s",
                              key_pattern=target.key_pattern or conf.get("KEY_PATTERN"))
            for target, future in zip(shown, futures, strict=True)]
