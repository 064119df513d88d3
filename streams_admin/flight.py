"""Single flight with a short freshness, inside one process.

Daphne runs each request's sync view in a thread of its own (Django's ASGIHandler opens a
ThreadSensitiveContext per request), so 50 viewers of the overview were 50 threads each
asking Redis for every stream and sorting them, all fighting for the GIL: 6 requests/s.
Here the first caller for a key computes; callers arriving meanwhile wait for that result,
and later callers reuse it while it is younger than `fresh` seconds. Nothing is shared
between processes: each Daphne process computes its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None
    finished: float = 0.0  # time.monotonic() when done


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}

    def run(self, key: Hashable, fresh: float, compute: Callable[[], Any]) -> Any:
        """compute()'s result for key: shared with callers in flight, reused while fresh.
        An error is shared with those waiting for it, never kept."""
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None or (flight.done.is_set() and not self._usable(flight, fresh))
            if leader:
                self._forget_stale(fresh)
                flight = self._flights[key] = _Flight()
        assert flight is not None
        if leader:
            try:
                flight.value = compute()
            except BaseException as exc:
                flight.error = exc
                raise
            finally:
                flight.finished = time.monotonic()
                flight.done.set()
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        return flight.value

    def clear(self) -> None:
        with self._lock:
            self._flights.clear()

    @staticmethod
    def _usable(flight: _Flight, fresh: float) -> bool:
        return flight.error is None and time.monotonic() - flight.finished < fresh

    def _forget_stale(self, fresh: float) -> None:
        """Keeps the table as small as the keys asked for within `fresh` seconds."""
        for key in [k for k, f in self._flights.items()
                    if f.done.is_set() and not self._usable(f, fresh)]:
            del self._flights[key]
