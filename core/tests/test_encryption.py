"""EncryptionMiddleware: what reaches the backend is ciphertext bound to its place, keys rotate,
and everything that cannot be decrypted is a DecryptionError naming the session, never a
cryptography exception or a key.

The stores run over a ``DictBackend`` (core_testkit), whose dicts hold the bytes the backend was
given, so a test can read them and plant altered or copied ones.
"""

from __future__ import annotations

import base64

import pytest
from core_testkit import DictBackend, factory_of

from sessionstore import (
    ConfigurationError,
    CorruptRecordError,
    DecryptionError,
    Session,
    SessionStore,
    TransportType,
    open_store,
)
from sessionstore.encryption import (
    ENCRYPTED_MAGIC,
    KEYS_ENVIRONMENT_VARIABLE,
    EncryptionMiddleware,
    generate_key,
)

SECRET = "upstream-secret-token-0123456789"
OLD_KEY = bytes(range(32))
NEW_KEY = generate_key()


def store_on(
    backend: DictBackend, *keys: bytes | str, namespace: str = "default", **options: object
) -> SessionStore:
    middleware = [EncryptionMiddleware(list(keys), **options)] if keys else []  # type: ignore[arg-type]
    return open_store(factory_of(backend), namespace=namespace, middleware=middleware)


def session(session_id: str = "s1") -> Session:
    return Session(id=session_id, transport=TransportType.HTTP, metadata={"token": SECRET})


async def test_payloads_and_events_reach_the_backend_encrypted_and_read_back() -> None:
    backend = DictBackend()
    async with store_on(backend, NEW_KEY) as store:
        created = await store.create_session(session())
        created.metadata["n"] = 1
        await store.update_session(created)
        first = await store.append_event("s1", "stream", SECRET.encode())
        await store.append_event("s1", "stream", None)  # a priming event stays one
        await store.append_event("s1", "stream", b"second")

        stored = backend.records["s1"].payload
        assert stored.startswith(ENCRYPTED_MAGIC)
        assert SECRET.encode() not in stored
        data = [event[3] for event in backend.events]
        assert data[1] is None
        assert all(d is not None and d.startswith(ENCRYPTED_MAGIC) for d in (data[0], data[2]))
        assert all(SECRET.encode() not in (d or b"") for d in data)

        assert (await store.get_session("s1")).metadata == {"token": SECRET, "n": 1}
        assert [s.id for s in await store.get_sessions_batch(["s1", "nope"])] == ["s1"]
        assert [s.id for s in await store.list_sessions()] == ["s1"]
        for scope in ("s1", None):
            stream, events = await store.replay_events_after(first, session_id=scope)
            assert (stream, [e.data for e in events]) == ("stream", [None, b"second"])

        dump = await store.dump_session("s1")
        assert dump.streams == (("stream", (SECRET.encode(), None, b"second")),)
        await store.delete_session("s1")
        assert await store.load_session(dump)
        assert backend.records["s1"].payload.startswith(ENCRYPTED_MAGIC)
        assert (await store.get_session("s1")).metadata["token"] == SECRET
        assert (await store.dump_session("s1")).streams == dump.streams


async def test_a_store_opened_without_the_middleware_says_the_record_looks_encrypted() -> None:
    backend = DictBackend()
    async with store_on(backend, NEW_KEY) as store:
        await store.create_session(session())
    async with store_on(backend) as plain:
        with pytest.raises(CorruptRecordError, match="looks encrypted") as caught:
            await plain.get_session("s1")
    assert caught.value.session_id == "s1"


async def test_a_record_copied_to_another_session_does_not_decrypt() -> None:
    backend = DictBackend()
    async with store_on(backend, NEW_KEY) as store:
        await store.create_session(session("a"))
        await store.create_session(session("b"))
        backend.records["b"] = backend.records["b"]._replace(payload=backend.records["a"].payload)
        with pytest.raises(DecryptionError, match="does not authenticate") as caught:
            await store.get_session("b")
        assert caught.value.session_id == "b"


async def test_a_record_of_another_namespace_does_not_decrypt() -> None:
    backend = DictBackend()  # shared by both namespaces: as if a record were copied across
    async with store_on(backend, NEW_KEY, namespace="one") as store, store.sibling("two") as other:
        await other.create_session(session())
        assert (await other.get_session("s1")).metadata["token"] == SECRET
        with pytest.raises(DecryptionError, match="does not authenticate"):
            await store.get_session("s1")


async def test_an_event_copied_to_another_session_or_stream_does_not_decrypt() -> None:
    backend = DictBackend()
    async with store_on(backend, NEW_KEY) as store:
        for session_id in ("a", "b"):
            await store.create_session(session(session_id))
        await store.append_event("a", "stream", b"of a")
        cursor_b = await store.append_event("b", "stream", None)
        cursor_other = await store.append_event("b", "other", None)
        stolen = backend.events[0][3]
        backend.events.append(("99-1", "b", "stream", stolen))
        backend.events.append(("99-2", "b", "other", stolen))
        with pytest.raises(DecryptionError, match="belongs to another session") as caught:
            await store.replay_events_after(cursor_b, session_id="b")
        assert caught.value.session_id == "b"
        with pytest.raises(DecryptionError, match="does not authenticate"):
            await store.replay_events_after(cursor_other)


@pytest.mark.parametrize(
    "damage",
    [
        "truncated to the header",
        "truncated by one byte",
        "empty after the magic",
        "flipped in the key id",
        "flipped in the nonce",
        "flipped in the ciphertext",
        "flipped in the tag",
        "unknown format",
    ],
)
async def test_a_damaged_record_raises_a_decryption_error(damage: str) -> None:
    backend = DictBackend()
    async with store_on(backend, OLD_KEY) as store:
        await store.create_session(session())
        stored = bytearray(backend.records["s1"].payload)
        flips = {
            "flipped in the key id": 6,
            "flipped in the nonce": 15,
            "flipped in the ciphertext": 30,
            "flipped in the tag": len(stored) - 1,
        }
        if damage in flips:
            stored[flips[damage]] ^= 0x01
        elif damage == "truncated to the header":
            del stored[13:]
        elif damage == "truncated by one byte":
            del stored[-1:]
        elif damage == "empty after the magic":
            del stored[4:]
        else:
            stored[4] = 9
        backend.records["s1"] = backend.records["s1"]._replace(payload=bytes(stored))
        with pytest.raises(DecryptionError) as caught:
            await store.get_session("s1")
    error = caught.value
    assert error.session_id == "s1"
    assert error.__cause__ is None  # no cryptography internals, chained or shown
    assert error.__context__ is None or error.__suppress_context__
    assert OLD_KEY.hex() not in str(error)
    assert repr(OLD_KEY) not in str(error)


async def test_rotation_writes_with_the_newest_key_and_reads_with_every_key() -> None:
    backend = DictBackend()
    async with store_on(backend, OLD_KEY) as store:
        await store.create_session(session("old"))
    rotated = EncryptionMiddleware([NEW_KEY, OLD_KEY])
    old_id, new_id = rotated.key_ids[1], rotated.key_ids[0]  # the list's order: newest first
    async with open_store(factory_of(backend), middleware=[rotated]) as store:
        assert (await store.get_session("old")).metadata["token"] == SECRET
        await store.create_session(session("new"))
        refreshed = await store.get_session("old")
        await store.update_session(refreshed)
    assert EncryptionMiddleware.key_id_of(backend.records["new"].payload) == new_id
    assert EncryptionMiddleware.key_id_of(backend.records["old"].payload) == new_id

    backend.records["kept"] = backend.records["new"]._replace(id="kept")
    async with store_on(backend, OLD_KEY) as store:
        await store.create_session(session("under-old"))
    async with store_on(backend, NEW_KEY) as store:
        with pytest.raises(DecryptionError, match=f"no key for key id {old_id}") as caught:
            await store.get_session("under-old")
    assert caught.value.key_id == old_id
    assert NEW_KEY not in str(caught.value)
    assert OLD_KEY.hex() not in str(caught.value)


async def test_a_listing_goes_on_past_a_record_it_cannot_decrypt() -> None:
    backend = DictBackend()
    async with store_on(backend, NEW_KEY) as store:
        for session_id in ("a", "b", "c"):
            await store.create_session(session(session_id))
        backend.records["b"] = backend.records["b"]._replace(payload=backend.records["a"].payload)
        skipped: list[CorruptRecordError] = []
        listed = await store.list_sessions(on_corrupt=skipped.append)
    assert [s.id for s in listed] == ["a", "c"]
    assert [(type(e), e.session_id) for e in skipped] == [(DecryptionError, "b")]


async def test_a_batch_read_fails_on_a_record_it_cannot_decrypt_as_on_a_corrupt_one() -> None:
    """The contract of get_sessions_batch with or without middleware: one record that cannot
    be read fails the whole batch, naming it (never silently left out, which would make it look
    deleted); the first such record in request order is the one named."""
    plain, encrypted = DictBackend(), DictBackend()
    async with store_on(plain) as store:
        for session_id in ("a", "b", "c"):
            await store.create_session(session(session_id))
        plain.records["b"] = plain.records["b"]._replace(payload=b"not a codec envelope")
        with pytest.raises(CorruptRecordError) as corrupt:
            await store.get_sessions_batch(["a", "b", "c"])
    assert corrupt.value.session_id == "b"
    async with store_on(encrypted, OLD_KEY) as store:
        for session_id in ("a", "b", "c"):
            await store.create_session(session(session_id))
    async with store_on(encrypted, NEW_KEY) as store:  # OLD_KEY retired: a, b, c unreadable
        await store.create_session(session("d"))
        with pytest.raises(DecryptionError, match="no key for key id") as retired:
            await store.get_sessions_batch(["d", "c", "a"])
        assert retired.value.session_id == "c"
        assert [s.id for s in await store.get_sessions_batch(["d"])] == ["d"]


async def test_unencrypted_records_are_refused_unless_accepted() -> None:
    backend = DictBackend()
    async with store_on(backend) as plain:
        await plain.create_session(session())
        await plain.append_event("s1", "stream", b"plain")
    async with store_on(backend, NEW_KEY) as store:
        with pytest.raises(DecryptionError, match="not encrypted"):
            await store.get_session("s1")
    async with store_on(backend, NEW_KEY, accept_plaintext=True) as store:
        assert (await store.get_session("s1")).metadata["token"] == SECRET
        assert (await store.dump_session("s1")).streams == (("stream", (b"plain",)),)


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        ([b"short"], "key #1 is 5 bytes"),
        ([NEW_KEY, b"x" * 31], "key #2 is 31 bytes"),
        (["not base64 at all!"], "key #1 is text but not base64"),
        ([base64.b64encode(b"k" * 20).decode()], "key #1 is base64 of 20 bytes"),
        ([12345], "key #1 is a int"),
        ([], "at least one key"),
        (NEW_KEY, "must be a list"),
        ([NEW_KEY, NEW_KEY], "key #2 is given twice"),
    ],
    # Named by the problem, never by the keys: NEW_KEY is drawn at import, and a test name that
    # differs between processes stops a pytest-xdist run.
    ids=lambda value: value if isinstance(value, str) and " " in value else "keys",
)
def test_bad_keys_are_refused_without_showing_them(keys: object, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        EncryptionMiddleware(keys)  # type: ignore[arg-type]
    assert NEW_KEY not in str(caught.value)
    assert "k" * 20 not in str(caught.value)


def test_keys_never_appear_in_reprs() -> None:
    middleware = EncryptionMiddleware([NEW_KEY, OLD_KEY])
    raw_new = base64.urlsafe_b64decode(NEW_KEY)
    for text in (repr(middleware), str(middleware), repr(vars(middleware))):
        for secret in (NEW_KEY, repr(raw_new), repr(OLD_KEY), OLD_KEY.hex(), raw_new.hex()):
            assert secret not in text
    assert middleware.key_ids[0] in repr(middleware)
    assert [len(key_id) for key_id in middleware.key_ids] == [16, 16]
    for form in (raw_new, NEW_KEY, NEW_KEY.rstrip("="), base64.b64encode(raw_new).decode()):
        assert EncryptionMiddleware([form]).newest_key_id == middleware.newest_key_id


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEYS_ENVIRONMENT_VARIABLE, raising=False)
    with pytest.raises(ConfigurationError, match=KEYS_ENVIRONMENT_VARIABLE):
        EncryptionMiddleware.from_environment()
    monkeypatch.setenv(
        KEYS_ENVIRONMENT_VARIABLE, f" {NEW_KEY}, {base64.b64encode(OLD_KEY).decode()}"
    )
    middleware = EncryptionMiddleware.from_environment()
    assert middleware.key_ids == EncryptionMiddleware([NEW_KEY, OLD_KEY]).key_ids


async def test_a_transform_added_to_an_open_store_runs_from_then_on() -> None:
    backend = DictBackend()
    async with store_on(backend) as store:
        await store.create_session(session("before"))
        store.add_middleware(EncryptionMiddleware([NEW_KEY], accept_plaintext=True))
        await store.create_session(session("after"))
        assert backend.records["after"].payload.startswith(ENCRYPTED_MAGIC)
        assert not backend.records["before"].payload.startswith(ENCRYPTED_MAGIC)
        assert {s.id for s in await store.list_sessions()} == {"before", "after"}
