"""Lua scripts read once per process from their .lua files, and called by SHA (EVALSHA).

Not redis-py's Script: in a pipeline it sends SCRIPT EXISTS before every execute (a round
trip each time), a cluster pipeline refuses it, and it is bound to one client. Here a script
is its source and SHA; each call names its client, plain or cluster, sync or asyncio.

A server may lack a script it had: SCRIPT FLUSH, a restart, a cluster failover (the new
primary may never have seen it: from Redis 7.0 replicas get no scripts). NOSCRIPT means the
script did not run, so it is loaded (on a cluster, on every primary) and the call sent once
more -- a pipeline's NOSCRIPT calls too, in one more round trip. Lives in the bus
(Django-free); the dashboard imports it, as it does wire.py.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from string import Template
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

Command = tuple[Any, ...]  # ("EVALSHA", sha, numkeys, *keys, *args), as a pipeline takes it

_by_sha: dict[str, Lua] = {}  # a NOSCRIPT reply's command names its script by SHA


class Lua:
    """One script: its source and SHA, computed once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        _by_sha[self.sha] = self

    @classmethod
    def file(cls, beside: str, name: str, names: dict[str, str] | None = None,
             first_line: str = "") -> Lua:
        """The script in `name`, in the directory of the module `beside` (its __file__);
        `names` fill its $names (Lua has no $), `first_line` is a shebang of flags."""
        text = (Path(beside).parent / name).read_text()
        return cls(first_line + (Template(text).substitute(names) if names else text))

    def command(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def __call__(self, client: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        command = self.command(keys, args)
        try:
            return client.execute_command(*command)
        except NoScriptError:
            load(client, [command])
            return client.execute_command(*command)

    async def run(self, client: Any, keys: Sequence[Any] = (),
                  args: Sequence[Any] = ()) -> Any:
        """The call on an asyncio client."""
        command = self.command(keys, args)
        try:
            return await client.execute_command(*command)
        except NoScriptError:
            await load_async(client, [command])
            return await client.execute_command(*command)


def missing(commands: Sequence[Command], replies: Sequence[Any]) -> list[int]:
    """Positions of the script calls the server answered NOSCRIPT (other commands pass)."""
    return [i for i, reply in enumerate(replies)
            if isinstance(reply, NoScriptError) and commands[i][1] in _by_sha]


def _scripts(commands: Iterable[Command]) -> list[Lua]:
    return [_by_sha[sha] for sha in dict.fromkeys(command[1] for command in commands)]


def _primaries(client: Any) -> list[Any]:
    """Where a script goes on a cluster: every primary. The node that answered NOSCRIPT may
    not be the one the slot map names (an ASK during a resharding); one flush, one load each.
    None: the client is one server."""
    if isinstance(client, redis.RedisCluster | redis.asyncio.RedisCluster):
        return list(client.get_primaries())
    return [None]


# A primary that is away gets the script when a call meets NOSCRIPT there, once it is back.
_AWAY = (redis.ConnectionError, redis.TimeoutError)


def load(client: Any, commands: Iterable[Command]) -> None:
    """SCRIPT LOAD of the commands' scripts where they run."""
    for script in _scripts(commands):
        for node in _primaries(client):
            if node is None:
                client.script_load(script.source)
                continue
            with contextlib.suppress(*_AWAY):
                client.execute_command("SCRIPT LOAD", script.source, target_nodes=node)


async def load_async(client: Any, commands: Iterable[Command]) -> None:
    """load on an asyncio client."""
    for script in _scripts(commands):
        for node in _primaries(client):
            if node is None:
                await client.script_load(script.source)
                continue
            with contextlib.suppress(*_AWAY):
                await client.execute_command("SCRIPT LOAD", script.source, target_nodes=node)


def pipelined(client: Any, commands: list[Command], raise_on_error: bool = True) -> list[Any]:
    """The commands' replies in one pipeline (per node on a cluster); errors in place when
    not raised. NOSCRIPT calls are sent again once their scripts are loaded."""
    replies = _send(client, commands)
    again = missing(commands, replies)
    if again:
        load(client, [commands[i] for i in again])
        for i, reply in zip(again, _send(client, [commands[i] for i in again]), strict=True):
            replies[i] = reply
    return _raised(replies) if raise_on_error else replies


async def pipelined_async(client: Any, commands: list[Command],
                          raise_on_error: bool = True) -> list[Any]:
    """pipelined on an asyncio client."""
    replies = await _send_async(client, commands)
    again = missing(commands, replies)
    if again:
        await load_async(client, [commands[i] for i in again])
        retried = await _send_async(client, [commands[i] for i in again])
        for i, reply in zip(again, retried, strict=True):
            replies[i] = reply
    return _raised(replies) if raise_on_error else replies


def _send(client: Any, commands: list[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute(raise_on_error=False))


async def _send_async(client: Any, commands: list[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    return list(await pipe.execute(raise_on_error=False))


def _raised(replies: list[Any]) -> list[Any]:
    error = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if error is not None:
        raise error
    return replies
