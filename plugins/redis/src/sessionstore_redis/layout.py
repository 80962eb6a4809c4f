"""Where a namespace's data lives in Redis, and the byte layout of a stored session.

Keys (``P`` is the key prefix, ``NS`` the namespace, ``k`` the shard of the session)::

    P:{NS/k}:s:<id>   string  the session record: a 25-byte header, then the codec's payload
    P:{NS/k}:e:<id>   hash    the session's last event id and event log
    P:{NS/k}:i        zset    id -> deadline (ms; +inf for none): counts and purges
    P:{NS/k}:n        zset    id -> 0: the lexicographic order that pages walk
    P:{NS/k}:h        hash    the counter that hands out stream handles
    P:{NS/0}:layout   string  the shard count every client of the namespace must agree on

Everything between the braces is the hash tag, so every key of a session, and the indexes of its
shard, sit in one slot: each operation is one Lua script, atomic on a single node and on a Redis
Cluster alike. A namespace has one shard on a single node and several (default 16) on a cluster,
so its sessions spread over the cluster's nodes. Namespaces are ``A-Z a-z 0-9 _ . -``, so a
namespace never contains a brace and the tag is exactly what is written above.

The record header is ``0x01`` then three big-endian unsigned 64-bit integers: version, deadline
(0 for none) and incarnation. Fixed offsets let a script rewrite the deadline in place
(``SETRANGE``) and compare version and incarnation as bytes, which Lua's doubles could not hold.
"""

from __future__ import annotations

import struct
import zlib

from sessionstore import CorruptRecordError, SessionRecord
from sessionstore.records import new_record

__all__ = ["HEADER_SIZE", "Layout", "pack_record", "unpack_record"]

RECORD_FORMAT = 1
HEADER_SIZE = 25
_HEADER = struct.Struct(">BQQQ")
_U64 = struct.Struct(">Q")


def pack_record(version: int, deadline_ms: int | None, incarnation: int, payload: bytes) -> bytes:
    """The stored value of a session record."""
    return _HEADER.pack(RECORD_FORMAT, version, deadline_ms or 0, incarnation) + payload


def pack_u64(value: int) -> bytes:
    """Eight big-endian bytes, as a script compares versions and incarnations."""
    return _U64.pack(value)


def unpack_record(session_id: str, value: bytes) -> SessionRecord:
    """The :class:`SessionRecord` a stored value holds; :class:`CorruptRecordError` if none."""
    if len(value) < HEADER_SIZE or value[0] != RECORD_FORMAT:
        raise CorruptRecordError(
            session_id,
            f"the Redis value is not a sessionstore record (format byte {value[:1]!r}, "
            f"{len(value)} bytes)",
        )
    _, version, deadline, incarnation = _HEADER.unpack_from(value)
    return new_record((session_id, version, deadline or None, value[HEADER_SIZE:], incarnation))


def record_deadline(value: bytes) -> int | None:
    """The deadline in a stored value whose format :func:`unpack_record` accepts."""
    deadline: int = _U64.unpack_from(value, 9)[0]
    return deadline or None


class Layout:
    """The key names of one namespace."""

    def __init__(self, prefix: str, namespace: str, shards: int) -> None:
        self.shards = shards
        self.bases = [f"{prefix}:{{{namespace}/{k}}}:" for k in range(shards)]
        self.layout_key = f"{self.bases[0]}layout"
        self.description = f"sessionstore-redis layout 1, shards={shards}"

    def shard_of(self, session_id: str) -> int:
        if self.shards == 1:
            return 0
        return zlib.crc32(session_id.encode()) % self.shards

    def record_key(self, session_id: str) -> str:
        return f"{self.bases[self.shard_of(session_id)]}s:{session_id}"

    def session_keys(self, session_id: str) -> tuple[int, str, str]:
        """``(shard, record key, events key)``."""
        shard = self.shard_of(session_id)
        base = self.bases[shard]
        return shard, f"{base}s:{session_id}", f"{base}e:{session_id}"

    def deadline_index(self, shard: int) -> str:
        return f"{self.bases[shard]}i"

    def name_index(self, shard: int) -> str:
        return f"{self.bases[shard]}n"

    def handles(self, shard: int) -> str:
        return f"{self.bases[shard]}h"
