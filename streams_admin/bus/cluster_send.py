"""A pipeline's commands sent to a Redis Cluster's primaries by the bus itself.

redis-py's asyncio ClusterPipeline spent ~175 µs of Python per command (the slot found twice
per command, packing in Python), against ~100 µs all told on one server. Here each command
is routed by its key through the client's own slot map, each primary's share is packed by
hiredis and written at once on one of its connections, the primaries at once, as Coalescer
does on one server.

The map can be stale. A MOVED reply patches it (as redis-py does) and the command goes
again; an ASK (its slot is migrating, the key has left) sends it to the importing node after
ASKING, on the same connection -- redis-py 8.1's client sends the two on different
connections once the node has several, is answered MOVED and gives up ("TTL exhausted").
What we cannot route (a command whose key we do not know), and what met a lost node or a
cluster down, goes through the ClusterPipeline as before, once the map is read again.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from redis.asyncio.cluster import ClusterNode, NodesManager
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    RedisError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams_admin.bus.coalesce import READ_TIMEOUT_S, Command, Unavailable, pack_command, reply

# Worth sending again (only these commands, not the whole pipeline): a node away, a failover.
RETRYABLE = (*Unavailable, ClusterDownError, TryAgainError, SlotNotCoveredError)
# Left to redis-py's ClusterPipeline: a slot map still wrong, a cluster changing, a node lost.
REDIRECTED = (AskError, TryAgainError, ClusterDownError, *Unavailable)
# The commands whose one key is their first argument (the bus's own): routed here.
FIRST_KEY = frozenset({"XADD", "XACK", "XDEL", "XRANGE", "XREVRANGE", "XLEN", "XTRIM", "XCLAIM",
                       "XAUTOCLAIM", "XPENDING", "SET", "GET", "EXPIRE", "PEXPIRE"})
# Rounds a command follows MOVED or ASK here before the ClusterPipeline takes it.
REDIRECTS = 3
ASKING = pack_command(("ASKING",))

# A primary, and whether each of its commands goes after ASKING (an ASK's importing node).
Share = tuple[ClusterNode, bool]


def slot_of(key: Any) -> int:
    return key_slot(key.encode() if isinstance(key, str) else key)


async def send(client: Any, commands: list[Command]) -> list[Any]:
    """Each command's reply, errors as values (as a pipeline's `raise_on_error=False`).
    The caller has the client's slot map known (`cluster.guarded`)."""
    manager: NodesManager = client.nodes_manager
    replies: list[Any] = [None] * len(commands)
    todo, rest = list(range(len(commands))), []
    for _ in range(REDIRECTS):
        shares, unrouted = _route(manager, commands, todo, replies)
        rest += unrouted
        await _write(commands, shares, replies)
        todo = [i for share in shares.values() for i in share
                if isinstance(replies[i], AskError)]  # a MovedError is an AskError
        await _patch(manager, [replies[i] for i in todo])
        if not todo:
            break
    again = sorted({*rest, *(i for i, r in enumerate(replies) if isinstance(r, REDIRECTED))})
    if again:
        await _renew(manager, [replies[i] for i in again])
        for i, result in zip(again, await _pipelined(client, [commands[i] for i in again]),
                             strict=True):
            replies[i] = result
    return replies


def _route(manager: NodesManager, commands: list[Command], todo: list[int],
           replies: list[Any]) -> tuple[dict[Share, list[int]], list[int]]:
    """Positions by the node each command goes to, in order; those we cannot route (an ASK
    naming a node the map lacks, one that held no slot yet, too). A key is looked up once
    per call: a batch is mostly a few streams."""
    nodes: dict[Any, ClusterNode | None] = {}
    shares: dict[Share, list[int]] = {}
    rest: list[int] = []
    for i in todo:
        asked, asking = replies[i], False
        if isinstance(asked, AskError) and not isinstance(asked, MovedError):
            node, asking = manager.get_node(host=asked.host, port=asked.port), True
        else:
            key = _key(commands[i])
            node = nodes[key] if key in nodes else nodes.setdefault(key, _primary(manager, key))
        (rest if node is None else shares.setdefault((node, asking), [])).append(i)
    return shares, rest


def _key(command: Command) -> Any:
    """The key that routes `command`; None for one we do not know (keyless, several keys,
    XREAD): the ClusterPipeline routes those."""
    name = command[0]
    if name in FIRST_KEY or (name == "DEL" and len(command) == 2):
        return command[1]
    if name == "EVALSHA":  # ("EVALSHA", sha, numkeys, *keys, *args)
        keys = command[3:3 + int(command[2])]
        if keys and len({slot_of(k) for k in keys}) == 1:
            return keys[0]
    return None


def _primary(manager: NodesManager, key: Any) -> ClusterNode | None:
    if key is None:
        return None
    try:
        return manager.get_node_from_slot(slot_of(key))
    except SlotNotCoveredError:  # a map being read again: the ClusterPipeline waits for it
        return None


async def _write(commands: list[Command], shares: dict[Share, list[int]],
                 replies: list[Any]) -> None:
    answers = await asyncio.gather(*(_on_node(node, [commands[i] for i in positions], asking)
                                     for (node, asking), positions in shares.items()))
    for positions, answer in zip(shares.values(), answers, strict=True):
        for i, result in zip(positions, answer, strict=True):
            replies[i] = result


async def _on_node(node: ClusterNode, commands: list[Command], asking: bool) -> list[Any]:
    """The commands' replies from one node, in order, errors as values. A connection lost
    on the way: its error for each reply not read, and the connection closed, never reused
    with replies still to come (and Python 3.12.1's TypeError on a closed transport: see
    cluster.guarded)."""
    packed = [pack_command(c) for c in commands]  # before the socket: a bad argument raises
    wire = b"".join(ASKING + p for p in packed) if asking else b"".join(packed)
    per_command = 2 if asking else 1
    replies: list[Any] = []
    try:
        connection = node.acquire_connection()
    except RedisConnectionError as error:  # MaxConnectionsError: all of the node's in use
        return [error] * len(commands)
    try:
        await node.disconnect_if_needed(connection)  # the slot map was read again meanwhile
        await connection.send_packed_command(wire, check_health=False)
        async with asyncio.timeout(READ_TIMEOUT_S):  # one deadline for all, as in Coalescer
            for _ in commands:
                for _ in range(per_command):
                    result = await reply(connection)
                replies.append(result)  # after ASKING's OK: the command's own
    except (*Unavailable, TypeError) as error:
        await connection.disconnect()
        replies += [_lost(node, error)] * (len(commands) - len(replies))
    except BaseException:
        await connection.disconnect()
        raise
    finally:
        node.release(connection)
    return _parsed(node, commands, replies)


def _lost(node: ClusterNode, error: Exception) -> Exception:
    if isinstance(error, TimeoutError):  # asyncio's deadline (an OSError, not redis-py's)
        return RedisTimeoutError(f"{node.name} did not answer within {READ_TIMEOUT_S}s")
    if isinstance(error, TypeError):
        return RedisConnectionError(f"connection to {node.name} lost: {error}")
    return error


def _parsed(node: ClusterNode, commands: list[Command], replies: list[Any]) -> list[Any]:
    """Replies as redis-py's pipeline gives them (its callbacks: XREVRANGE's entries as
    (id, fields) pairs, SET's True), which the bus's callers on a cluster read."""
    callbacks = node.response_callbacks
    return [callbacks[c[0]](r) if c[0] in callbacks and not isinstance(r, Exception) else r
            for c, r in zip(commands, replies, strict=True)]


async def _patch(manager: NodesManager, redirects: list[AskError]) -> None:
    """The slot map patched by each MOVED (once per slot), as redis-py does on one: the
    slot's new primary is named in it. An ASK changes nothing: the slot is still migrating."""
    for moved in {e.slot_id: e for e in redirects if isinstance(e, MovedError)}.values():
        await manager.move_slot(moved)


async def _renew(manager: NodesManager, errors: list[Any]) -> None:
    """The slot map read again (CLUSTER SLOTS) after a node was lost or the cluster was
    down. A read that fails is left to the ClusterPipeline, which tries again itself and
    answers what it meets, as before."""
    if any(isinstance(e, (*Unavailable, ClusterDownError)) for e in errors):
        with contextlib.suppress(RedisError, RedisClusterException, OSError):
            await manager.initialize()


async def _pipelined(client: Any, commands: list[Command]) -> list[Any]:
    """Through redis-py's ClusterPipeline, as the bus sent everything before. A node still
    away (a failover under way) is these commands' error, so the replies of the others
    stand and only these are sent again (ClusterCoalescer._send)."""
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    try:
        return list(await pipe.execute(raise_on_error=False))
    except RETRYABLE as error:
        return [error] * len(commands)
    except TypeError as error:  # see cluster.guarded
        return [RedisConnectionError(f"connection lost: {error}")] * len(commands)
