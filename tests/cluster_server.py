"""A private Redis Cluster on free ports, for tests and benchmarks (never the user's Redis):
3 primaries and 3 replicas, a short node timeout so a failover takes seconds, not minutes."""

from __future__ import annotations

import socket
import subprocess
import time

import redis
from redis.crc import key_slot

from tests.redis_server import RedisServer, cli, free_port

NODE_TIMEOUT_MS = 2000
# A node's cluster bus listens on its port + 10000, so its port must be 55535 or less.
MAX_PORT = 55535


def cluster_port() -> int:
    """A free port under 55536 whose bus port (+10000) is free too: Redis refuses higher."""
    while True:
        port = free_port()
        if port > MAX_PORT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class ClusterNode(RedisServer):
    def start(self) -> ClusterNode:
        self.extra = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                      "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                      # A replica syncs at once (not after 5 s): one that never synced
                      # would not take over from a primary killed early in a test.
                      "--repl-diskless-sync-delay", "0"]
        return super().start()  # type: ignore[return-value]


class RedisCluster:
    """Start, kill and stop the nodes of one cluster; `url` names one node, as a user would."""

    def __init__(self, primaries: int = 3, replicas: int = 1) -> None:
        self.cli = str(cli())
        self.replicas = replicas
        self.nodes = [ClusterNode(cluster_port()) for _ in range(primaries * (1 + replicas))]
        self.url = self.nodes[0].url

    def start(self, timeout: float = 30) -> RedisCluster:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run([self.cli, "--cluster", "create", *addresses, "--cluster-replicas",
                        str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok(timeout)
        return self

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every live node says cluster_state:ok and knows every slot, and every
        replica has synced with its primary."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._ok(node) for node in self.nodes if node.process is not None):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not become ok")
            time.sleep(0.1)

    @staticmethod
    def _ok(node: RedisServer) -> bool:
        client = redis.Redis.from_url(node.url, socket_timeout=1)
        try:
            info = client.cluster("info")
            replication = client.info("replication")
            return info.get("cluster_state") == "ok" and \
                int(info.get("cluster_slots_ok", 0)) == 16384 and \
                replication.get("master_link_status", "up") == "up"
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> redis.RedisCluster:
        return redis.RedisCluster.from_url(self.url)

    def primary_of(self, key: bytes | str) -> ClusterNode:
        """The node that holds key now."""
        cluster = self.client()
        try:
            node = cluster.get_node_from_key(key)
            return next(n for n in self.nodes if n.port == node.port)
        finally:
            cluster.close()

    def kill(self, node: ClusterNode) -> None:
        """SIGKILL, as a crash: its replica takes over after NODE_TIMEOUT_MS."""
        assert node.process is not None
        node.process.kill()
        node.process.wait(10)
        node.process = None

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class Migration:
    """One slot moving from the primary holding it to another, key by key, as
    `redis-cli --cluster reshard` does it (a cluster of primaries only: any other node is
    one)."""

    def __init__(self, cluster: RedisCluster, key: str) -> None:
        self.slot = key_slot(key.encode())
        source = cluster.primary_of(key)
        target = next(n for n in cluster.nodes if n.port != source.port)
        self.source, self.target = redis.Redis(port=source.port), redis.Redis(port=target.port)
        self.others = [redis.Redis(port=n.port) for n in cluster.nodes
                       if n.port not in (source.port, target.port)]
        self.target_port = target.port
        target_id = self.target.execute_command("CLUSTER MYID").decode()
        source_id = self.source.execute_command("CLUSTER MYID").decode()
        self.target.execute_command("CLUSTER SETSLOT", self.slot, "IMPORTING", source_id)
        self.source.execute_command("CLUSTER SETSLOT", self.slot, "MIGRATING", target_id)
        self.target_id = target_id

    def move(self, *keys: str) -> None:
        self.source.execute_command("MIGRATE", "127.0.0.1", self.target_port, "", 0, 5000,
                                    "KEYS", *keys)

    def finish(self) -> None:
        for node in (self.target, self.source, *self.others):
            node.execute_command("CLUSTER SETSLOT", self.slot, "NODE", self.target_id)
        for node in (self.source, self.target, *self.others):
            node.close()
