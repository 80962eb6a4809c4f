"""Commands to a Redis Cluster: each to the master serving its key's slot, over connections held
per node (:mod:`.direct`), following the cluster's redirections within the operation's deadline.

redis-py's cluster client (8.1, the version this was written against) is not used, for what it
does while the cluster changes:

* **ASK** (a slot half moved): it sends ``ASKING`` and then the command as two calls, each taking
  the node's oldest free connection; with more than one idle connection the command goes out on
  a connection that never sent ``ASKING``, the importing node answers ``MOVED`` back, and the
  command bounces between the two nodes until its budget of 16 redirections is spent
  ("TTL exhausted").
* **MOVED**: every fifth one closes every connection of the client, including those other
  commands are waiting on: their replies are lost ("Connection closed by server") though their
  slots never moved, and a write whose reply is lost may or may not have run.
* **TRYAGAIN** (a script whose keys are split between the two nodes of a migration): sixteen
  tries, 50 ms apart in the second half, whatever the caller's deadline.
* **WAIT** must go on the connection of the write it waits for; the cluster client sends every
  command on whatever connection is free, so it cannot ask for it (see ``wait_replicas``).

Here the slot table comes from ``CLUSTER SLOTS`` of any node that answers, read at first use and
again after a node failed to answer or said ``CLUSTERDOWN`` (one refresh at a time, shared by the
commands that need it). ``MOVED`` updates the slot's owner and sends again; ``ASK`` sends
``ASKING`` and the command together, on one connection, to the node named; ``TRYAGAIN`` waits a
little (5 ms, doubling to 100 ms) and sends again. Each of these answers means the command did not
run, so sending it again is safe, and the operation's deadline bounds the tries. A connection
failure or ``CLUSTERDOWN`` is not retried: a write whose reply was lost may have run (see
:func:`.connection.open_client`), and during a failover the caller learns at once that the store
is unavailable; the table is refreshed for the next command, which finds the replica that took
over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    ConnectionError,
    MovedError,
    RedisError,
    ResponseError,
    TryAgainError,
)

from .direct import DirectCommands
from .spinning import SPIN_LIMIT

__all__ = ["ClusterCommands"]

Address = tuple[str, int]

_FIRST_PAUSE = 0.005  # seconds before sending again after TRYAGAIN (or a redirection loop)
_LONGEST_PAUSE = 0.1
_FREE_REDIRECTIONS = 5  # MOVED/ASK followed at once; after these, with pauses (a stale table)
_SCRIPT_COMMANDS = {"EVALSHA", "EVAL"}


class ClusterCommands:
    """Run commands on the masters of a Redis Cluster.

    ``client_for(host, port)`` makes the redis-py client of a node (credentials, TLS, connect
    timeout), whose connection pool's factory makes the connections; ``refresh_timeout`` bounds
    each node's answer to ``CLUSTER SLOTS``; ``timeout`` a round trip shared by concurrent
    commands to a node (see :mod:`.coalescing`). Replies are as :class:`.DirectCommands` gives them.
    Every command must name a key (its first, or a script's first key), and the commands of one
    :meth:`execute_many` must be in the first one's slot or name no key (``WAIT``).
    """

    def __init__(
        self,
        startup_nodes: Sequence[Address],
        client_for: Callable[[str, int], Redis],
        *,
        refresh_timeout: float,
        timeout: float,
        poll_limit: float = SPIN_LIMIT,
    ) -> None:
        self._startup = list(startup_nodes)
        self._client_for = client_for
        self._refresh_timeout = refresh_timeout
        self._timeout = timeout
        self._poll_limit = poll_limit
        self._clients: dict[Address, Redis] = {}
        self._nodes: dict[Address, DirectCommands] = {}
        self._slots: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        self._stale = True
        self._refresh: asyncio.Task[None] | None = None
        self._unanswered: set[Address] = set()  # asked last when the table is read again
        self._closed = False

    async def initialize(self) -> None:
        """Read the slot table now (it is read at first use otherwise)."""
        await self._refreshed()

    async def execute(self, *args: Any) -> Any:
        """Send one command to the master of its key's slot and return its reply."""
        (reply,) = await self.execute_many([args])
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def execute_many(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Send ``commands`` in one write, on one connection, to the master of the first one's
        slot; return their replies in order, an error reply as the exception in its place
        (as :meth:`.DirectCommands.execute_many`). Redirections of the first command are
        followed (see the module's description); a failed connection raises."""
        slot = _slot_of(commands[0])
        asking: Address | None = None
        redirections = 0
        pause = _FIRST_PAUSE
        while True:
            if self._stale:
                await self._refreshed()
            address = asking or self._slots[slot]
            if address is None:
                self._stale = True
                raise ClusterDownError(f"no master serves hash slot {slot}")
            node = self._node(address)
            sent = [("ASKING",), *commands] if asking else commands
            try:
                replies = await node.execute_many(sent)
            except (ConnectionError, OSError):
                self._stale = True  # the node may be gone: the next command asks the others
                self._unanswered.add(address)
                raise
            if asking:
                replies = replies[1:]
            first, asking = replies[0], None
            if isinstance(first, MovedError):  # an AskError too: this test comes first
                self._slots[first.slot_id] = _address(first.host, first.port)
            elif isinstance(first, AskError):
                asking = _address(first.host, first.port)
            elif isinstance(first, TryAgainError):
                redirections = _FREE_REDIRECTIONS  # a migration under way: give it a moment
            elif isinstance(first, ClusterDownError):
                self._stale = True
                return replies
            else:
                return replies
            redirections += 1
            if redirections > _FREE_REDIRECTIONS:
                await asyncio.sleep(pause)
                pause = min(pause * 2, _LONGEST_PAUSE)

    async def close(self) -> None:
        """Disconnect every node (see :meth:`.DirectCommands.close`); later commands fail with
        ``ConnectionError``."""
        self._closed = True
        refresh, self._refresh = self._refresh, None
        if refresh is not None and not refresh.done():
            refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await refresh
        nodes, self._nodes = self._nodes, {}
        clients, self._clients = self._clients, {}
        await asyncio.gather(*(node.close() for node in nodes.values()), return_exceptions=True)
        await asyncio.gather(
            *(client.aclose() for client in clients.values()), return_exceptions=True
        )

    # -- the slot table ------------------------------------------------------------------------

    def _node(self, address: Address) -> DirectCommands:
        if self._closed:
            raise ConnectionError("the store is closed")
        node = self._nodes.get(address)
        if node is None:
            client = self._clients[address] = self._client_for(*address)
            node = self._nodes[address] = DirectCommands(
                client.connection_pool, timeout=self._timeout, poll_limit=self._poll_limit
            )
        return node

    async def _refreshed(self) -> None:
        """Wait for the slot table to be read again; commands that need it share one reading,
        and a caller that gives up (its deadline) does not stop it for the others."""
        refresh = self._refresh
        if refresh is None or refresh.done():
            refresh = self._refresh = asyncio.get_running_loop().create_task(
                self._read_slots(), name="sessionstore-redis cluster slots"
            )
            # Its failure is each waiter's; marked seen, in case every waiter gave up first.
            refresh.add_done_callback(lambda task: task.cancelled() or task.exception())
        await asyncio.shield(refresh)

    async def _read_slots(self) -> None:
        # The masters known now first (they know the newest state), then the startup nodes; those
        # that failed to answer last: a hung one holds each reading up for refresh_timeout.
        known = list(dict.fromkeys(a for a in self._slots if a is not None))
        candidates = sorted(
            dict.fromkeys([*known, *self._startup]), key=lambda a: a in self._unanswered
        )
        failures = []
        for address in candidates:
            try:
                async with asyncio.timeout(self._refresh_timeout):
                    reply = await self._node(address).execute("CLUSTER", "SLOTS")
            except (RedisError, OSError, TimeoutError) as exc:
                failures.append(f"{address[0]}:{address[1]}: {type(exc).__name__}")
                self._unanswered.add(address)
                continue
            self._unanswered.discard(address)
            table: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
            for first, last, master, *_ in reply:
                host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
                if host in ("", "?"):  # the node asked does not know its own address
                    host = address[0]
                owner = _address(host, int(master[1]))
                table[int(first) : int(last) + 1] = [owner] * (int(last) - int(first) + 1)
            self._slots = table
            self._stale = False
            return
        raise ConnectionError(
            f"no node of the cluster answered CLUSTER SLOTS ({'; '.join(failures)})"
        )


def _address(host: str, port: int | str) -> Address:
    return host, int(port)


def _slot_of(command: Sequence[Any]) -> int:
    """The hash slot of a command's key: a script's first key, else its first argument."""
    if command[0] in _SCRIPT_COMMANDS:
        if int(command[2]) < 1:
            raise ValueError(f"{command[0]!r} without keys cannot be routed on a cluster")
        key = command[3]
    else:
        key = command[1]
    return int(key_slot(key.encode() if isinstance(key, str) else bytes(key)))
