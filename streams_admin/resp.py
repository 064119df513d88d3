"""A RESP2 reply read off a socket a chunk at a time, keeping of each bulk string only what
the caller asks for (bounded.py: pages that show a budget of entries that may be huge)."""

from __future__ import annotations

import socket

import redis

CHUNK = 64 * 1024


class Reply:
    """A RESP2 reply read from a socket, with a buffer of at most one chunk (or one line)."""

    def __init__(self, sock: socket.socket, asking: bool = False) -> None:
        self.sock, self.buf = sock, bytearray()
        self.asking = asking  # each command follows an ASKING, whose +OK is skipped here
        self.started = False  # a reply (not an error) was read: the read cannot start again

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
        if self.asking and line == b"+OK":  # an entry's reply holds no simple string
            return self.line()
        self.started = True
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

    def next_length(self) -> int:
        """The length of the bulk string that comes next (its header peeked at, not read):
        how much of it to keep is decided from it."""
        while (end := self.buf.find(b"\r\n")) < 0:
            self._fill()
        return int(self.buf[1:end])
