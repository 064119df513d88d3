"""Server-side scripts for changes that must be atomic per entry.

Each lives in its .lua file beside this one (KEYS, ARGV and reply in its header), read once
per process and called by SHA (bus/lua.py).
"""

from __future__ import annotations

from streams_admin.bus import wire
from streams_admin.bus.lua import Lua

# The wire names the scripts write, substituted into their source as $names (Lua has no $).
NAMES = {wire.name(n): wire.name(n) for n in (
    wire.REQUEUED_FROM, wire.REQUEUE_COUNT, wire.DELIVERY_COUNT, wire.CONSUMER, wire.DATA)}

REQUEUE = Lua.file(__file__, "requeue.lua", NAMES)  # a pending entry to the end, acked
DEAD_LETTER = Lua.file(__file__, "dead_letter.lua", NAMES)  # to the dead letters, acked
REDRIVE = Lua.file(__file__, "redrive.lua", NAMES)  # a dead letter back to its stream
COPY_ONCE = Lua.file(__file__, "copy_once.lua")  # a cross-slot move's first step
COUNT_STEP = Lua.file(__file__, "count_step.lua")  # a preview's count, in short calls
