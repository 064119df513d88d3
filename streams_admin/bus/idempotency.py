"""Idempotency markers: one successful run per event_id and group, however many copies arrive.

Copies of an event are separate entries with the same event_id (a publish retried after a
lost reply stores one twice). Before a copy's handler runs, it takes the event's marker
(`SET NX PX`), which names the delivery (`running:{consumer}:{entry_id}`), not just the
consumer: one consumer often holds several copies in one batch. The marker turns `done` in
the MULTI that acks the run; a failed run deletes it so that a retry may take it.

Copies in one process wait for each other here, so a copy read in the same batch as the one
that ran is acked at once as a duplicate. A copy on another consumer finds the marker taken
and stays pending (the delivery it spent waiting given back: handling.py _wait); it is
retried after `min_idle_ms` and then acked as a duplicate. The lease
is renewed while the handler runs, so a long handler keeps it; a consumer that crashes stops
renewing, and after `min_idle_ms` any copy (the crashed one included) may run again.
Renewing uses `PEXPIRE ... GT` (Redis 7.0+); on 6.2 a lease lasts `min_idle_ms`, as it did.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import cast

from streams_admin.bus.coalesce import Coalescer, Command

log = logging.getLogger("streams_admin.bus")

DONE = b"done"


@dataclass
class Markers:
    commands: Coalescer
    consumer: str
    lease_ms: int
    # Copies running in this process, by marker key: resolved with True once it succeeded.
    _local: dict[str, asyncio.Future[bool]] = field(default_factory=dict)
    _leases: set[str] = field(default_factory=set)  # markers we hold, renewed while held
    _renewer: asyncio.Task[None] | None = None
    _warned: bool = False

    async def settled_here(self, key: str) -> bool:
        """Wait for the copies of this event running in this process; did one succeed?"""
        while (other := self._local.get(key)) is not None:
            await asyncio.wait([other])  # not `await other`: our cancel must not cancel it
            if other.result():
                return True
        return False

    def begin(self, key: str) -> None:
        """This copy is the one running here now (call with no await since settled_here)."""
        self._local[key] = asyncio.get_running_loop().create_future()

    def end(self, key: str, *, succeeded: bool) -> None:
        self._leases.discard(key)
        self._local.pop(key).set_result(succeeded)
        if not self._leases and self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    async def held(self, key: str) -> bytes | None:
        """What the marker holds now: DONE, a running copy's token, or None."""
        (value,) = await self.commands.run([("GET", key)])
        return cast(bytes | None, value)

    async def take(self, key: str, entry_id: str) -> bytes | None:
        """None if this delivery may run (the lease is ours); else what the marker holds."""
        token = f"running:{self.consumer}:{entry_id}".encode()
        _, value = await self.commands.run([
            ("SET", key, token, "NX", "PX", self.lease_ms),
            ("GET", key),
        ])
        if value != token:
            return cast(bytes | None, value)  # GET's reply
        self._leases.add(key)
        if self._renewer is None:
            self._renewer = asyncio.create_task(self._renew())
        return None

    async def _renew(self) -> None:
        while self._leases:
            await asyncio.sleep(self.lease_ms / 3000)
            # GT: only ever lengthens a TTL, so it can never cut short a `done` marker's
            # long life should the run have finished meanwhile.
            commands: list[Command] = [("PEXPIRE", key, self.lease_ms, "GT")
                                       for key in self._leases]
            try:
                results = await self.commands.run(commands)
            except Exception as error:  # noqa: BLE001 - retried next round, while leases last
                results = [error]
            errors = [r for r in results if isinstance(r, Exception)]
            if errors and not self._warned:  # e.g. Redis 6.2 has no GT: warn once, not per round
                self._warned = True
                log.warning("renewing idempotency leases: %r", errors[0])
