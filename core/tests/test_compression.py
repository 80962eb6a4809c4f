"""CompressionMiddleware: large values reach the backend compressed, every value reads whatever
the threshold was when it was written, and a hostile record costs bounded memory and raises a
CorruptRecordError naming the session. With encryption, the plain bytes are compressed.

The stores run over a ``DictBackend`` (core_testkit), whose dicts hold the bytes the backend was
given, so a test can read them and plant hostile ones.
"""

from __future__ import annotations

import struct

import pytest
import zstandard
from core_testkit import DictBackend, factory_of

from sessionstore import (
    MAX_RECORD_BYTES,
    ConfigurationError,
    CorruptRecordError,
    Session,
    SessionStore,
    TransportType,
    encode_session,
    open_store,
)
from sessionstore.compression import COMPRESSED_MAGIC, CompressionMiddleware
from sessionstore.encryption import ENCRYPTED_MAGIC, EncryptionMiddleware, generate_key

BIG = {"text": "a repetitive line of text. " * 400}  # about 11 KB, compresses well


def store_on(backend: DictBackend, *middleware: object) -> SessionStore:
    return open_store(factory_of(backend), middleware=list(middleware))


def session(session_id: str = "s1", metadata: dict[str, str] | None = None) -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, metadata=metadata or {})


async def test_values_over_the_threshold_are_stored_compressed_and_read_back() -> None:
    backend = DictBackend()
    async with store_on(backend, CompressionMiddleware(threshold=1024)) as store:
        big = await store.create_session(session("big", BIG))
        small = await store.create_session(session("small"))
        first = await store.append_event("big", "stream", b"x" * 5000)
        await store.append_event("big", "stream", b"tiny")
        await store.append_event("big", "stream", None)

        stored = backend.records["big"].payload
        assert stored.startswith(COMPRESSED_MAGIC)
        assert len(stored) < len(encode_session(big)) / 10
        assert backend.records["small"].payload == encode_session(small)  # as it was
        data = [event[3] for event in backend.events]
        assert data[0] is not None
        assert data[0].startswith(COMPRESSED_MAGIC)
        assert data[1:] == [b"tiny", None]

        assert (await store.get_session("big")).metadata == BIG
        assert [s.id for s in await store.list_sessions()] == ["big", "small"]
        assert [s.id for s in await store.get_sessions_batch(["small", "big"])] == ["small", "big"]
        _, events = await store.replay_events_after(first)
        assert [e.data for e in events] == [b"tiny", None]
        dump = await store.dump_session("big")
        assert dump.streams == (("stream", (b"x" * 5000, b"tiny", None)),)
        await store.delete_session("big")
        assert await store.load_session(dump)
        assert backend.records["big"].payload.startswith(COMPRESSED_MAGIC)
        assert (await store.dump_session("big")).streams == dump.streams


async def test_values_read_whatever_the_threshold_was_when_written() -> None:
    backend = DictBackend()
    async with store_on(backend) as plain:  # before the middleware was added
        await plain.create_session(session("plain", BIG))
        await plain.append_event("plain", "stream", b"y" * 5000)
    async with store_on(backend, CompressionMiddleware(threshold=0)) as eager:
        await eager.create_session(session("eager", BIG))
    for threshold in (0, 10**9):
        async with store_on(backend, CompressionMiddleware(threshold=threshold)) as store:
            for session_id in ("plain", "eager"):
                assert (await store.get_session(session_id)).metadata == BIG
            assert (await store.dump_session("plain")).streams == (("stream", (b"y" * 5000,)),)


@pytest.mark.parametrize("size", [0, 4, 100, 5000])
async def test_event_data_that_starts_like_a_compressed_value_reads_as_given(size: int) -> None:
    backend = DictBackend()
    data = (COMPRESSED_MAGIC + b"\x01" + b"z" * size)[: max(size, 5)]
    async with store_on(backend, CompressionMiddleware(threshold=1024)) as store:
        await store.create_session(session())
        await store.append_event("s1", "stream", data)
        assert (await store.dump_session("s1")).streams == (("stream", (data,)),)


def hostile_frame(claimed: int) -> bytes:
    """A zstd frame whose header claims ``claimed`` bytes and holds one raw byte."""
    descriptor = (3 << 6) | (1 << 5)  # an 8-byte content size; single segment
    header = b"\x28\xb5\x2f\xfd" + bytes((descriptor,)) + struct.pack("<Q", claimed)
    last_raw_block_of_one_byte = (1 | (0 << 1) | (1 << 3)).to_bytes(3, "little")
    return header + last_raw_block_of_one_byte + b"a"


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (hostile_frame(2**40), "claims 1099511627776 bytes, over the limit"),
        (hostile_frame(MAX_RECORD_BYTES + 1), f"claims {MAX_RECORD_BYTES + 1} bytes"),
        (hostile_frame(50), "does not decompress|holds 1 bytes, not the 50 stated"),
        (b"not a frame at all", "not a zstd frame|does not state its size"),
        (zstandard.ZstdCompressor().compress(b"r" * 5000)[:-3], "does not decompress"),
        (zstandard.ZstdCompressor(write_content_size=False).compress(b"r"), "does not state"),
    ],
    ids=["claims 1 TiB", "claims one over", "claims more", "garbage", "truncated", "no size"],
)
async def test_a_hostile_compressed_record_is_refused_with_bounded_memory(
    stored: bytes, problem: str
) -> None:
    backend = DictBackend()
    async with store_on(backend, CompressionMiddleware()) as store:
        await store.create_session(session())
        planted = COMPRESSED_MAGIC + b"\x01" + stored
        backend.records["s1"] = backend.records["s1"]._replace(payload=planted)
        with pytest.raises(CorruptRecordError, match=problem) as caught:
            await store.get_session("s1")
    assert caught.value.session_id == "s1"


async def test_a_compressed_record_over_the_size_limit_is_refused_before_decompressing() -> None:
    backend = DictBackend()
    async with store_on(backend, CompressionMiddleware()) as store:
        await store.create_session(session())
        await store.append_event("s1", "stream", b"x")
        frame = zstandard.ZstdCompressor().compress(bytes(MAX_RECORD_BYTES + 1))
        backend.events[0] = (*backend.events[0][:3], COMPRESSED_MAGIC + b"\x01" + frame)
        with pytest.raises(CorruptRecordError, match="over the limit"):
            await store.dump_session("s1")


@pytest.mark.parametrize(("stored", "problem"), [(b"", "cut short"), (b"\x07rest", "format 7")])
async def test_an_unknown_or_cut_short_header_is_refused(stored: bytes, problem: str) -> None:
    backend = DictBackend()
    async with store_on(backend, CompressionMiddleware()) as store:
        await store.create_session(session())
        backend.records["s1"] = backend.records["s1"]._replace(payload=COMPRESSED_MAGIC + stored)
        with pytest.raises(CorruptRecordError, match=problem):
            await store.get_session("s1")


async def test_with_encryption_the_plain_bytes_are_compressed_then_encrypted() -> None:
    backend = DictBackend()
    encryption = EncryptionMiddleware([generate_key()])
    async with store_on(backend, encryption, CompressionMiddleware()) as store:
        big = await store.create_session(session("big", BIG))
        await store.append_event("big", "stream", b"e" * 5000)
        stored = backend.records["big"].payload
        assert stored.startswith(ENCRYPTED_MAGIC)
        assert len(stored) < len(encode_session(big)) / 10  # ciphertext of the compressed bytes
        event = backend.events[0][3]
        assert event is not None
        assert len(event) < 500
        assert (await store.get_session("big")).metadata == BIG
        assert (await store.dump_session("big")).streams == (("stream", (b"e" * 5000,)),)


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"threshold": -1}, "threshold must be an int >= 0"),
        ({"threshold": "1k"}, "threshold must be an int >= 0"),
        ({"level": 0}, "level must be an int from 1 to 22"),
        ({"level": 23}, "level must be an int from 1 to 22"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        CompressionMiddleware(**options)  # type: ignore[arg-type]
