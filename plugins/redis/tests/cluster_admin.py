"""Changing a running test cluster the way operators and failures do: moving a hash slot to
another master (``CLUSTER SETSLOT`` + ``MIGRATE``, as ``redis-cli --cluster reshard`` does it) and
killing a master until one of its replicas takes over.

Blocking calls on purpose (redis-py's synchronous client): a test runs them in a thread
(``asyncio.to_thread``) while its event loop keeps the store under load.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from redis_servers import ClusterNodeInfo, RedisClusterServers

__all__ = ["bring_back", "kill_master", "master_of", "migrate_slot", "serves", "wait_for"]

HOST = "127.0.0.1"


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Poll ``check`` until it holds; return the seconds it took. ``AssertionError`` naming
    ``what`` after ``timeout`` seconds."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


def master_of(cluster: RedisClusterServers, slot: int) -> ClusterNodeInfo:
    """The master serving ``slot`` now, as the cluster sees it."""
    for node in cluster.topology():
        if node.is_master and not node.failed and node.serves(slot):
            return node
    raise LookupError(f"no master serves slot {slot}")


def serves(cluster: RedisClusterServers, slot: int, node_id: str) -> bool:
    """Whether node ``node_id`` is the master of ``slot`` now (``False`` while none is)."""
    try:
        return master_of(cluster, slot).node_id == node_id
    except (LookupError, RuntimeError):
        return False


def migrate_slot(
    cluster: RedisClusterServers,
    slot: int,
    target: ClusterNodeInfo,
    *,
    keys_per_call: int = 1,
    pause: float = 0.0,
) -> int:
    """Move ``slot`` to master ``target`` while clients keep using it; return the keys moved.

    ``keys_per_call`` keys go per ``MIGRATE`` and ``pause`` seconds pass after each, so the slot
    stays half moved for a while: clients then meet ``ASK`` (a key already moved), ``TRYAGAIN``
    (a script whose keys are split between the nodes) and, once it is done, ``MOVED``.
    """
    source = master_of(cluster, slot)
    if source.node_id == target.node_id:
        raise ValueError(f"slot {slot} is on {target.port} already")
    masters = [node for node in cluster.topology() if node.is_master and not node.failed]
    with (
        redis.Redis(host=HOST, port=source.port) as src,
        redis.Redis(host=HOST, port=target.port) as dst,
    ):
        # The order redis-cli uses: importing before migrating, so no ASK finds the target
        # unprepared; the target learns it owns the slot before the source stops serving it.
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        moved = 0
        while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, keys_per_call):
            src.execute_command("MIGRATE", HOST, target.port, "", 0, 5000, "KEYS", *keys)
            moved += len(keys)
            if pause:
                time.sleep(pause)
        dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        for node in masters:
            if node.node_id not in (source.node_id, target.node_id):
                with redis.Redis(host=HOST, port=node.port) as other:
                    other.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
    return moved


def bring_back(cluster: RedisClusterServers, port: int) -> None:
    """Start the node on ``port`` again if it was killed, and wait until the cluster is whole: a
    master that lost its slots in a failover comes back as a replica of the node that took
    them."""
    server = cluster.server_on(port)
    if server.running:
        cluster.wait_until_ok()
        return
    server.restart()

    def following() -> bool:
        # It starts as the master its config file remembers, learns it lost its slots, then
        # follows their new master: until its first sync is done the cluster is not whole.
        with redis.Redis(host=HOST, port=port) as node:
            replication = node.info("replication")
        return bool(
            replication["role"] == "slave" and replication.get("master_link_status") == "up"
        )

    wait_for(f"node {port} following a master again", following, 30)
    cluster.wait_until_ok()


def kill_master(cluster: RedisClusterServers, slot: int) -> tuple[ClusterNodeInfo, float]:
    """SIGKILL the master of ``slot`` and wait until one of its replicas serves the slot; return
    the new master and the seconds the takeover took. ``bring_back`` the old one afterwards."""
    old = master_of(cluster, slot)
    started = time.monotonic()
    cluster.server_on(old.port).kill()

    def taken_over() -> bool:
        try:
            return master_of(cluster, slot).node_id != old.node_id
        except (LookupError, RuntimeError):
            return False

    # Failure detection (node timeout), then an election: well within ten node timeouts.
    wait_for(
        f"a replica of {old.port} taking slot {slot} over", taken_over, 10 * cluster.node_timeout
    )
    new = master_of(cluster, slot)
    if new.master_id is not None or new.port == old.port:
        raise AssertionError(f"slot {slot} went to {new}, not to a promoted replica")
    return new, time.monotonic() - started
