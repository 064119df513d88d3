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
import socket
from collections.abc import Callable
from typing import Any, Protocol

import redis

from streams_admin.redis import REDIRECTS, by_node, node_at, node_client, refresh_slots

CHUNK = 64 * 1024


class _Reply:
    """A RESP2 reply read from a socket, with a buffer of at most one chunk (or one line)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buf = sock, bytearray()

    def _fill(self) -> None:
        data = self.sock.recv(CHUNK)
        if not data:
            raise redis.ConnectionError("Redis closed the connection during a read")
        self.buf += data

    def line(self) -> tuple[bytes, bytes]:
        """(the type byte, the rest) of a line like *2 or $10; an error reply raises."""
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:end])
        del self.buf[:end + 2]
        if line[:1] == b"-":
            raise redis.ResponseError(line[1:].decode("utf-8", "replace"))
        return line[:1], line[1:]

    def header(self) -> tuple[bytes, int]:
        kind, rest = self.line()
        return kind, int(rest)

    def bulk(self, keep: int) -> tuple[bytearray, int]:
        """A bulk string's first `keep` bytes (the rest is read and dropped), and its length."""
        kind, size = self.header()
        if kind != b"$" or size < 0:
            raise redis.ResponseError(f"unexpected reply {kind!r} in an entry")
        return self._body(size, keep), size

    def _body(self, size: int, keep: int) -> bytearray:
        kept = bytearray(min(keep, size))  # filled in place: no copy of a big value
        view, at = memoryview(kept), 0
        while at < len(kept):
            if not self.buf:
                self._fill()
            take = min(len(kept) - at, len(self.buf))
            with memoryview(self.buf) as part:
                view[at:at + take] = part[:take]
            del self.buf[:take]
            at += take
        self._drop(size + 2 - len(kept))  # the rest, and its \r\n
        return kept  # not bytes(kept): that would copy a whole downloaded value

    def skip(self, count: int) -> int:
        """Read and drop `count` bulk strings; their total length. The fast path for the
        thousands of fields a row does not show: no object made for any of them."""
        buf, at, total = self.buf, 0, 0
        find, end_of_buf = buf.find, len(buf)
        for _ in range(count):
            while (end := find(b"\r\n", at)) < 0:
                del buf[:at]
                at = 0
                self._fill()
                end_of_buf = len(buf)
            if buf[at] != 36:  # b"$"
                raise redis.ResponseError(f"unexpected reply {bytes(buf[at:end])!r} in an entry")
            size = int(buf[at + 1:end])
            total, at = total + size, end + 4 + size  # the header's \r\n, the body, its \r\n
            if at > end_of_buf:
                del buf[:end_of_buf]
                self._drop(at - end_of_buf)
                at, end_of_buf = 0, len(buf)
        del buf[:at]
        return total

    def _drop(self, count: int) -> None:
        """Read and drop `count` bytes: the buffer's first, then the socket's, received into
        one scratch chunk (no bytes object made for them)."""
        if count <= len(self.buf):
            del self.buf[:count]
            return
        count -= len(self.buf)
        self.buf.clear()
        with memoryview(bytearray(CHUNK)) as scratch:
            while count:
                got = self.sock.recv_into(scratch, min(count, CHUNK))
                if not got:
                    raise redis.ConnectionError("Redis closed the connection during a read")
                count -= got

    def any(self, keep: int) -> object:
        """Any reply, each bulk string cut to `keep` bytes."""
        kind, rest = self.line()
        if kind == b":":
            return int(rest)
        if kind in b"+_":  # a simple string, or RESP3's null
            return rest or None
        size = int(rest)
        if size < 0:
            return None
        if kind == b"$":
            return bytes(self._body(size, keep))
        return [self.any(keep) for _ in range(2 * size if kind == b"%" else size)]


Keep = Callable[[int, int], int]  # (item position, its length) -> bytes to keep of it


def _call(commands: list[tuple[object, ...]], read: Callable[[_Reply], object],
          node: redis.Redis) -> object:
    """Send commands on a pooled connection of `node`, and read their replies with `read`.

    On a cluster the node is the one holding the key by the cached slot map: one that fails,
    or says the key moved, has the slot map read again and gives the banner this time."""
    pool = node.connection_pool
    try:
        conn = pool.get_connection()
    except redis.ConnectionError:
        refresh_slots()
        raise
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        sock = conn._get_socket()  # noqa: SLF001 (see the docstring)
        assert sock is not None  # get_connection() connected it
        return read(_Reply(sock))
    except (OSError, redis.ConnectionError) as exc:  # a timeout too: the banner
        conn.disconnect()
        refresh_slots()
        raise redis.ConnectionError(f"Error while reading from Redis: {exc}") from exc
    except redis.ResponseError as exc:
        conn.disconnect()
        if str(exc).startswith(REDIRECTS):
            refresh_slots()
            raise redis.ConnectionError(f"The cluster is moving this key: {exc}") from exc
        raise
    except BaseException:
        conn.disconnect()  # a reply half read: the connection cannot be used again
        raise
    finally:
        pool.release(conn)


def read_entry(key: bytes, entry_id: str, keep: Keep) -> list[tuple[bytearray, int]] | None:
    """The entry's names and values in order (name, value, name, ...), each as (the bytes
    `keep` kept of it, its length); None when there is no such entry."""

    def read(reply: _Reply) -> list[tuple[bytearray, int]] | None:
        if reply.header()[1] == 0:
            return None
        reply.header()  # the entry: [id, fields]
        reply.bulk(0)  # its ID
        count = max(0, reply.header()[1])
        return [reply.bulk(_keep_size(reply, keep, i)) for i in range(count)]

    return _call([("XRANGE", key, entry_id, entry_id, "COUNT", 1)], read,  # type: ignore[return-value]
                 node_client(key))


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

    def read(reply: _Reply) -> None:
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
                    fields.add(*reply.bulk(_keep_size(reply, fields.keep, i)))
                last = index == len(commands) - 1 and n == entries - 1
                if not done(index, fields) and not last:
                    raise _Stop

    with contextlib.suppress(_Stop):  # _call dropped the connection, with the rest of the reply
        _call(commands, read, node_client(commands[0][1]))  # type: ignore[arg-type]  # one key


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


def _read_infos(reply: _Reply, commands: list[tuple[object, ...]]) -> list[object]:
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


def _keep_size(reply: _Reply, keep: Keep, position: int) -> int:
    """`keep` is asked once the item's length is known: peek at its header."""
    while (end := reply.buf.find(b"\r\n")) < 0:
        reply._fill()  # noqa: SLF001
    return keep(position, int(reply.buf[1:end]))
