"""Servers the connection tests (and bench/tls.py) need: a redis-server speaking TLS only, with
a CA and certificates made by `openssl` in a temporary directory, and a Sentinel setup
(a primary, a replica, two `redis-server --sentinel`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.redis_server import RedisServer, free_port


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


def make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", key, "-out", cert)
    return cert, key


def make_cert(folder: Path, name: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    """A certificate signed by ca, valid for 127.0.0.1 and localhost."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    extensions = folder / f"{name}.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
             "-days", "2", "-extfile", extensions, "-out", cert)
    return cert, key


def make_certs(folder: Path) -> Certs:
    ca = make_ca(folder, "test-ca")
    server, client = make_cert(folder, "server", ca), make_cert(folder, "client", ca)
    return Certs(ca[0], server[0], server[1], client[0], client[1])


class TlsRedisServer:
    """redis-server on a TLS port and a unix socket (and a plain port only if given one)."""

    def __init__(self, certs: Certs, auth_clients: bool = False, plain_port: int = 0) -> None:
        self.certs, self.port, self.plain_port = certs, free_port(), plain_port
        self.dir = Path(tempfile.mkdtemp(prefix="streams-admin-tls-"))
        self.socket = self.dir / "redis.sock"
        self.url = f"rediss://127.0.0.1:{self.port}/0"
        self.auth_clients = auth_clients
        self.process: subprocess.Popen[bytes] | None = None
        self.extra: list[str] = []  # more redis-server arguments (a cluster node's)

    @property
    def options(self) -> dict[str, str]:
        """What a client needs: the CA, and the client certificate when it is asked for."""
        c = self.certs
        both = {"ssl_certfile": str(c.client_cert), "ssl_keyfile": str(c.client_key)}
        return {"ssl_ca_certs": str(c.ca), **(both if self.auth_clients else {})}

    def start(self) -> TlsRedisServer:
        c = self.certs
        self.process = subprocess.Popen([
            shutil.which("redis-server") or "redis-server", "--port", str(self.plain_port),
            "--tls-port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(self.dir), "--logfile", str(self.dir / "log"),
            "--tls-cert-file", str(c.server_cert), "--tls-key-file", str(c.server_key),
            "--tls-ca-cert-file", str(c.ca), "--unixsocket", str(self.socket),
            "--tls-auth-clients", "yes" if self.auth_clients else "no", *self.extra])
        wait_for(lambda: self.client().ping())
        return self

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, **self.options)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def wait_for(probe, seconds: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while True:
        try:
            if probe():
                return
        except (redis.ConnectionError, redis.ResponseError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError("server not ready")
        time.sleep(0.05)


class SentinelSetup:
    """A primary, its replica and two Sentinels watching them as `mymaster` (quorum 1)."""

    def __init__(self) -> None:
        self.primary, self.replica = RedisServer(), RedisServer()
        self.replica.extra = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.sentinel_ports = [free_port(), free_port()]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        self.url = f"redis+sentinel://{hosts}/mymaster/0"

    def start(self) -> SentinelSetup:
        self.primary.start()
        self.replica.start()
        for port in self.sentinel_ports:
            folder = Path(tempfile.mkdtemp(prefix="streams-admin-sentinel-"))
            config = folder / "sentinel.conf"
            config.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'log'}\n"
                f"sentinel monitor mymaster 127.0.0.1 {self.primary.port} 1\n"
                "sentinel down-after-milliseconds mymaster 1000\n"
                "sentinel failover-timeout mymaster 10000\n")
            self.sentinels.append(subprocess.Popen(
                [shutil.which("redis-server") or "redis-server", str(config), "--sentinel"]))
        wait_for(self._replica_known, 30)
        return self

    def sentinel(self) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[0], decode_responses=True)

    def _replica_known(self) -> bool:
        replicas = self.sentinel().sentinel_slaves("mymaster")
        synced = redis.Redis(port=self.replica.port).info("replication")
        return bool(replicas) and synced.get("master_link_status") == "up" and all(
            "s_down" not in str(r.get("flags")) for r in replicas)

    def primary_port(self) -> int:
        return int(self.sentinel().sentinel_get_master_addr_by_name("mymaster")[1])

    def failover(self) -> int:
        """SENTINEL FAILOVER; returns the new primary's port once the Sentinels name it."""
        old = self.primary_port()
        self.sentinel().execute_command("SENTINEL", "FAILOVER", "mymaster")
        wait_for(lambda: self.primary_port() != old, 30)
        new = self.primary_port()
        wait_for(lambda: redis.Redis(port=new).info("replication")["role"] == "master", 30)
        return new

    def stop(self) -> None:
        for process in self.sentinels:
            process.terminate()
            process.wait(10)
        self.replica.stop()
        self.primary.stop()


class TlsCluster:
    """Three primaries speaking TLS only (clients, cluster bus), no replicas."""

    def __init__(self, certs: Certs) -> None:
        from tests.cluster_server import cluster_port

        self.certs = certs
        self.nodes = [TlsRedisServer(certs) for _ in range(3)]
        for node in self.nodes:
            node.port = cluster_port()
            node.url = f"rediss://127.0.0.1:{node.port}/0"
            node.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                          "--tls-cluster", "yes", "--tls-replication", "yes"]
        self.url = self.nodes[0].url

    def start(self) -> TlsCluster:
        for node in self.nodes:
            node.start()
        subprocess.run(["redis-cli", "--tls", "--cacert", str(self.certs.ca), "--cluster",
                        "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        wait_for(lambda: all(n.client().cluster("info")["cluster_state"] == "ok"
                             for n in self.nodes), 30)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
