"""Instance heartbeats: which server instances of a fleet are alive, kept in the shared store.

Each instance keeps one record, ``mcp-instance.<instance id>``, whose metadata holds the wall-clock
time of its last beat; it beats every ``interval`` seconds and deletes the record when it stops
cleanly. Another instance counts it dead once its last beat is ``ttl`` seconds old (or the record
is gone). :class:`~sessionstore.mcp.McpSessions` keeps these records in the layer's own namespace
(:func:`~sessionstore.mcp.layer_namespace`), apart from the application's sessions, in a store
whose ttl removes the record of a killed instance on its own. Clocks of the hosts must agree to
well within ``ttl``.

Rolling upgrades: releases before the layer's own namespace kept these records among the
application's sessions. So that an instance of this release does not take one of an earlier
release for dead while both serve a fleet, :meth:`Heartbeat.alive` also reads the record there
(``legacy``). Once no instance of an earlier release runs, that read finds nothing and costs one
store read per check of an instance that is dead anyway; it can be removed in the release after
the next one (see "Upgrading" in docs/mcp.md).
"""

from __future__ import annotations

import asyncio
import logging
import time

from .._tasks import cancel_and_wait
from ..errors import SessionNotFoundError, SessionStoreError
from ..models import Session, TransportType
from ..store import SessionStore
from ._log import shown

__all__ = ["INSTANCE_ID_PREFIX", "Heartbeat"]

logger = logging.getLogger("sessionstore.mcp")

INSTANCE_ID_PREFIX = "mcp-instance."
_BEAT = "mcp_instance_beat"


class Heartbeat:
    """Keep this instance's heartbeat record fresh, and tell whether another instance is alive."""

    def __init__(
        self,
        store: SessionStore,
        instance_id: str,
        *,
        interval: float,
        ttl: float,
        legacy: SessionStore | None = None,
    ) -> None:
        """``legacy``: the store where instances of earlier releases keep their heartbeat
        records (the application's namespace), read by :meth:`alive`; never written."""
        if not 0 < interval < ttl:
            raise ValueError(
                f"heartbeat interval ({interval} s) must be positive and under its ttl ({ttl} s)"
            )
        self._store = store
        self._legacy = legacy
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
            logger.warning(
                "heartbeat record of %s not deleted: %s", shown(self.instance_id), shown(exc, 300)
            )

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
            return await self._alive_in_legacy(instance_id)
        except SessionStoreError as exc:
            logger.warning("liveness of %s unknown: %s", shown(instance_id), shown(exc, 300))
            return True
        if self._fresh(record):
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

    async def _alive_in_legacy(self, instance_id: str) -> bool:
        """Whether an instance of an earlier release beat within ``ttl`` (its record is in the
        application's namespace). Its record is left alone: that release deletes its own."""
        if self._legacy is None:
            return False
        try:
            record = await self._legacy.get_session(self.record_id(instance_id))
        except SessionNotFoundError:
            return False
        except SessionStoreError as exc:
            logger.warning("liveness of %s unknown: %s", shown(instance_id), shown(exc, 300))
            return True
        return self._fresh(record)

    def _fresh(self, record: Session) -> bool:
        beat = record.metadata.get(_BEAT)
        return isinstance(beat, int | float) and time.time() - beat < self.ttl

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._beat()
            except SessionStoreError as exc:
                logger.warning(
                    "heartbeat of %s failed: %s", shown(self.instance_id), shown(exc, 300)
                )

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
