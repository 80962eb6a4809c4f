"""Instance heartbeats: which server instances of a fleet are alive, kept in the shared store.

Each instance keeps one record, ``mcp-instance.<instance id>``, whose metadata holds the wall-clock
time of its last beat; it beats every ``interval`` seconds and deletes the record when it stops
cleanly. Another instance counts it dead once its last beat is ``ttl`` seconds old (or the record
is gone). :class:`~sessionstore.mcp.McpSessions` keeps these records in the layer's own namespace
(:func:`~sessionstore.mcp.layer_namespace`), apart from the application's sessions, in a store
whose ttl removes the record of a killed instance on its own. Clocks of the hosts must agree to
well within ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .._tasks import cancel_and_wait
from ..errors import SessionNotFoundError, SessionStoreError
from ..models import Session, TransportType
from ..store import SessionStore
from .events import shown

__all__ = ["INSTANCE_ID_PREFIX", "Heartbeat"]

logger = logging.getLogger("sessionstore.mcp")

INSTANCE_ID_PREFIX = "mcp-instance."
_BEAT = "mcp_instance_beat"


class Heartbeat:
    """Keep this instance's heartbeat record fresh, and tell whether another instance is alive."""

    def __init__(
        self, store: SessionStore, instance_id: str, *, interval: float, ttl: float
    ) -> None:
        if not 0 < interval < ttl:
            raise ValueError(
                f"heartbeat interval ({interval} s) must be positive and under its ttl ({ttl} s)"
            )
        self._store = store
        self.instance_id = instance_id
        self.interval = interval
        self.ttl = ttl
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Heartbeat {self.instance_id} every {self.interval} s, dead after {self.ttl} s>"

    @staticmethod
    def record_id(instance_id: str) -> str:
        """The id of an instance's heartbeat record."""
        return INSTANCE_ID_PREFIX + instance_id

    async def start(self) -> None:
        """Write the first beat (errors propagate: an instance that cannot reach its store should
        not start), then beat in the background."""
        await self._beat()
        self._task = asyncio.create_task(self._run(), name=f"heartbeat {self.instance_id}")

    async def stop(self) -> None:
        """Stop beating and delete the record, so other instances learn at once."""
        if self._task is not None:
            await cancel_and_wait([self._task])
            self._task = None
        try:
            await self._store.delete_session(self.record_id(self.instance_id))
        except SessionStoreError as exc:
            logger.warning("heartbeat record of %s not deleted: %s", self.instance_id, exc)

    async def alive(self, instance_id: str) -> bool:
        """Whether ``instance_id`` beat within the last ``ttl`` seconds.

        A store that cannot be read counts as alive: a store outage must not fail requests
        that are still running.
        """
        if instance_id == self.instance_id:
            return True
        try:
            record = await self._store.get_session(self.record_id(instance_id))
        except SessionNotFoundError:
            return False
        except SessionStoreError as exc:
            logger.warning("liveness of %s unknown: %s", shown(instance_id), shown(exc, 300))
            return True
        beat = record.metadata.get(_BEAT)
        if isinstance(beat, int | float) and time.time() - beat < self.ttl:
            return True
        # Dead (killed, never stopped cleanly): its record goes, or with no store ttl such
        # records would pile up. Were it only slow, its next beat writes the record again.
        try:
            await self._store.delete_session(record.id)
        except SessionStoreError as exc:
            logger.warning(
                "heartbeat record of %s not deleted: %s", shown(instance_id), shown(exc, 300)
            )
        return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._beat()
            except SessionStoreError as exc:
                logger.warning("heartbeat of %s failed: %s", self.instance_id, exc)

    async def _beat(self) -> None:
        record_id = self.record_id(self.instance_id)

        def beat(session: Session) -> None:
            session.metadata[_BEAT] = time.time()

        try:
            await self._store.modify_session(record_id, beat)
        except SessionNotFoundError:
            session = Session(id=record_id, transport=TransportType.HTTP)
            beat(session)
            await self._store.create_session(session)
