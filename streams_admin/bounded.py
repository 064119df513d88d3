"""Replies read off the socket keeping only the bytes a page shows: one entry, pages of
entries (XRANGE / XREVRANGE with COUNT), and XINFO STREAM (whose first-entry and last-entry
are whole entries, though pages use only their IDs).

Redis has no partial read of a stream entry. XRANGE through redis-py holds the whole reply
(and, while parsing, about twice that): 8 viewers of a 10 MB entry took Daphne +210 MB. A
Lua script that cuts the entry inside Redis costs Redis ~10 ms per MB (converting the reply
for Lua), 7x the XRANGE, in the thread every client of that Redis waits on. So: a plain
XRANGE, whose reply (RESP2) is read here from the connection's socket a chunk at a time,
keeping of each name and value only what `keep` asks for. Memory: the kept bytes and one
chunk, whatever the entry holds; Redis: one XRANGE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, Protocol, cast

import redis

from streams_admin.redis import REDIRECTS, by_node, node_at, node_client, refresh_slots
from streams_admin.resp import Reply

Keep = Callable[[int, int], int]  # (item position, its length) -> bytes to keep of it


class _Moving(redis.ConnectionError):
    """The node redirected the key before any reply was read: it may be asked again."""

    def __init__(self, message: str, redirect: str) -> None:
        super().__init__(message)
        self.redirect = redirect


def _on_key(commands: list[tuple[object, ...]], read: Callable[[Reply], object],
            key: bytes) -> object:
    """_call on the node holding key. A slot migrating (ASK) is followed once: each command
    after an ASKING, on the node the ASK names; a stale slot map (MOVED) is read again and
    the key asked once more. Still moving: the banner."""
    try:
        return _call(commands, read, node_client(key))
    except _Moving as exc:
        if not exc.redirect.startswith("ASK "):
            return _call(commands, read, node_client(key))  # the slot map read again
        asked = [c for command in commands for c in (("ASKING",), command)]
        return _call(asked, read, node_at(exc.redirect.split()[2]), asking=True)


def _call(commands: list[tuple[object, ...]], read: Callable[[Reply], object],
          node: redis.Redis, asking: bool = False) -> object:
    """Send commands on a pooled connection of `node`, and read their replies with `read`.

    On a cluster the node is the one holding the key by the cached slot map: one that fails
    has the slot map read again and gives the banner this time; a redirect before any reply
    was read is _Moving (see _on_key), after (a key moved between two commands) the banner."""
    pool = node.connection_pool
    try:
        conn = pool.get_connection()
    except redis.ConnectionError:
        refresh_slots()
        raise
    reply = None
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        sock = conn._get_socket()  # noqa: SLF001 (see the docstring)
        assert sock is not None  # get_connection() connected it
        reply = Reply(sock, asking)
        return read(reply)
    except (OSError, redis.ConnectionError) as exc:  # a timeout too: the banner
        conn.disconnect()
        refresh_slots()
        raise redis.ConnectionError(f"Error while reading from Redis: {exc}") from exc
    except redis.ResponseError as exc:
        conn.disconnect()
        if str(exc).startswith(REDIRECTS):
            if not str(exc).startswith("ASK "):
                refresh_slots()
            message = f"The cluster is moving this key: {exc}"
            if reply is not None and not reply.started and not asking:
                raise _Moving(message, str(exc)) from exc
            raise redis.ConnectionError(message) from exc
        raise
    except BaseException:
        conn.disconnect()  # a reply half read: the connection cannot be used again
        raise
    finally:
        pool.release(conn)


def read_entry(key: bytes, entry_id: str, keep: Keep) -> list[tuple[bytearray, int]] | None:
    """The entry's names and values in order (name, value, name, ...), each as (the bytes
    `keep` kept of it, its length); None when there is no such entry."""

    def read(reply: Reply) -> list[tuple[bytearray, int]] | None:
        if reply.header()[1] == 0:
            return None
        reply.header()  # the entry: [id, fields]
        reply.bulk(0)  # its ID
        count = max(0, reply.header()[1])
        return [reply.bulk(keep(i, reply.next_length())) for i in range(count)]

    return _on_key([("XRANGE", key, entry_id, entry_id, "COUNT", 1)], read,  # type: ignore[return-value]
                   key)


class Fields(Protocol):
    """What a bounded read of a page keeps of one entry: asked how many bytes to keep of each
    name and value (position in the entry, its length), then given them."""

    upto: int  # keeps nothing of the items from this position on: they are only skipped

    def keep(self, position: int, length: int) -> int: ...

    def add(self, kept: bytearray, length: int) -> None: ...

    def skip(self, size: int) -> None: ...  # the rest of the items, `size` bytes in all


class _Stop(Exception):  # noqa: N818 (not an error: the caller has what it wants)
    pass


def read_ranges(commands: list[tuple[object, ...]], start: Callable[[int, str, int], Fields],
                done: Callable[[int, Fields], bool]) -> None:
    """XRANGE / XREVRANGE commands in one round trip, each entry of their replies read into
    `start(command index, entry ID, field count)`'s Fields, then handed to `done`; when
    `done` says False the read stops there and the connection is dropped (what is left of the
    reply is never read). Memory: what the Fields keep, and one chunk."""

    def read(reply: Reply) -> None:
        for index in range(len(commands)):
            entries = reply.header()[1]
            for n in range(max(0, entries)):
                reply.header()  # the entry: [id, fields]
                entry_id = bytes(reply.bulk(ID_BYTES)[0]).decode("ascii", "replace")
                count = max(0, reply.header()[1])
                fields = start(index, entry_id, count // 2)
                for i in range(count):
                    if i >= fields.upto:
                        fields.skip(reply.skip(count - i))
                        break
                    fields.add(*reply.bulk(fields.keep(i, reply.next_length())))
                last = index == len(commands) - 1 and n == entries - 1
                if not done(index, fields) and not last:
                    raise _Stop

    with contextlib.suppress(_Stop):  # _call dropped the connection, with the rest of the reply
        _on_key(commands, read, cast(bytes, commands[0][1]))  # all of one key


ID_BYTES = 64  # more than any entry ID: what XINFO STREAM keeps of its entries' bulk strings


def xinfo_streams(keys: list[bytes]) -> list[tuple[object, object]]:
    """XINFO STREAM (its first and last entries cut to ID_BYTES a string) and XINFO GROUPS of
    each key in one round trip per node, as redis-py parses them; an error reply is an
    exception. A key a cluster is moving is asked again where it went (ASK: once, with
    ASKING; MOVED: by a new slot map); still moving, it gives the banner."""
    pairs: list[tuple[object, object]] = [(None, None)] * len(keys)
    todo = [(node, positions, False) for node, positions in by_node(keys)]
    for _ in range(2):
        moving: list[tuple[int, str]] = []
        for node, positions, asking in todo:
            commands: list[tuple[object, ...]]
            commands = [c for i in positions for kind in ("STREAM", "GROUPS")
                        for c in ([("ASKING",)] if asking else []) + [("XINFO", kind, keys[i])]]
            # mypy cannot type a lambda with a default argument (which binds this loop's list).
            flat = _call(commands, lambda reply, c=commands: _read_infos(reply, c), node)  # type: ignore[misc]
            for n, i in enumerate(positions):
                pair = (flat[2 * n], flat[2 * n + 1])  # type: ignore[index]
                redirect = next((str(x) for x in pair if isinstance(x, _Redirect)), None)
                if redirect is None:
                    pairs[i] = pair
                else:
                    moving.append((i, redirect))
        if not moving:
            return pairs
        todo = _again(keys, moving)
    raise redis.ConnectionError("The cluster is moving these streams: try again")


class _Redirect(redis.ResponseError):
    """MOVED, ASK, TRYAGAIN or CLUSTERDOWN: not the key's answer."""


def _read_infos(reply: Reply, commands: list[tuple[object, ...]]) -> list[object]:
    out: list[object] = []
    for command in commands:
        if command[0] == "ASKING":
            reply.any(0)  # +OK
            continue
        stream = command[1] == "STREAM"
        try:
            raw: Any = reply.any(ID_BYTES if stream else 1 << 30)  # a list when not stream
            out.append(_as_dict(raw) if stream else [_as_dict(g) for g in raw])
        except redis.ResponseError as exc:
            redirect = str(exc).startswith(REDIRECTS)
            out.append(_Redirect(str(exc)) if redirect else exc)
    return out


def _again(keys: list[bytes], moving: list[tuple[int, str]]
           ) -> list[tuple[redis.Redis, list[int], bool]]:
    """Where to ask the keys a node redirected: the node an ASK names, or by a new slot map."""
    asked: dict[str, list[int]] = {}
    moved: list[int] = []
    for i, error in moving:
        if error.startswith("ASK "):
            asked.setdefault(error.split()[2], []).append(i)
        else:
            moved.append(i)
    todo = [(node_at(address), positions, True) for address, positions in asked.items()]
    if moved:
        refresh_slots()
        todo += [(node, [moved[j] for j in positions], False)
                 for node, positions in by_node([keys[i] for i in moved])]
    return todo


def _as_dict(flat: object) -> dict[str, object]:
    items = list(flat)  # type: ignore[call-overload]
    return {bytes(k).decode(): v for k, v in zip(items[::2], items[1::2], strict=True)}
