"""AES-GCM encryption of payloads and event data, as a middleware (``sessionstore[encryption]``).

``open_store(spec, middleware=[EncryptionMiddleware(keys=[newest, older...])])`` encrypts every
payload and every event's data before the backend sees it, and decrypts what it reads back, so the
database, its replicas and its backups hold ciphertext only. What stays in clear: session ids,
versions, deadlines, last event ids, stream ids, event ids and sizes (the backend needs them to
index, expire and compare-and-set).

Each stored value is ``MAGIC, format, key id, [session digest,] nonce, ciphertext and tag``:

* ``MAGIC`` (``0xC1 "SSE"``) starts no codec envelope (msgpack never writes ``0xC1``), so a store
  opened without the middleware says a record looks encrypted instead of guessing;
* the key id is a fingerprint of the key (HMAC-SHA256 keyed by it, 8 bytes), never the key, so
  a reader picks the right key among several and rotation reads old records;
* the nonce is 96 random bits, fresh for every value (AES-GCM's limit: about 2**32 values per
  key; rotate long before);
* the associated data binds each value to its place: the namespace and session id for a payload,
  and the namespace, session and stream for an event, so a value copied to another session,
  stream or namespace does not decrypt. An event also carries a digest of its session id (16
  bytes of SHA-256, not secret) because a replay may be asked for by event id alone; a replay
  given the session id (as the MCP adapter asks) checks it.

Writes use the first (newest) key; every key of the list reads. ``sessionstore rekey`` rewrites
session records under the newest key (see :mod:`sessionstore.rekey`); events keep the key they
were written with until they age out, so keep an old key until ``rekey`` reports that no event
uses it.

Anything that cannot be decrypted (no key for its key id, altered, truncated, copied, not
encrypted at all) raises :class:`~sessionstore.DecryptionError` naming the session, never a
cryptography exception. Keys never appear in reprs, logs or errors.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Sequence

from .codec import MAX_RECORD_BYTES
from .errors import ConfigurationError, DecryptionError
from .transforms import PayloadTransform

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "sessionstore.encryption needs the cryptography package: "
        "pip install 'sessionstore[encryption]'"
    ) from exc

__all__ = [
    "ENCRYPTED_MAGIC",
    "KEYS_ENVIRONMENT_VARIABLE",
    "EncryptionMiddleware",
    "generate_key",
    "parse_key",
]

ENCRYPTED_MAGIC = b"\xc1SSE"
"""The first bytes of every encrypted payload and event."""
KEYS_ENVIRONMENT_VARIABLE = "SESSIONSTORE_ENCRYPTION_KEYS"
"""Where :meth:`EncryptionMiddleware.from_environment` and ``sessionstore rekey`` read keys."""

_FORMAT = 1
_KEY_ID_BYTES = 8
_DIGEST_BYTES = 16
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PAYLOAD_HEADER = len(ENCRYPTED_MAGIC) + 1 + _KEY_ID_BYTES
_EVENT_HEADER = _PAYLOAD_HEADER + _DIGEST_BYTES
_KEY_SIZES = (16, 24, 32)
# Whatever a value held before it was sealed (an envelope, maybe compressed) is at most
# MAX_RECORD_BYTES and a few bytes of another middleware's header: anything longer is refused
# before any work is spent on it.
_MAX_SEALED = MAX_RECORD_BYTES + 4096


def generate_key() -> str:
    """A new random 256-bit key in the text form :func:`parse_key` reads (URL-safe base64)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")


def parse_key(key: object, *, position: int = 1) -> bytes:
    """The AES key ``key`` stands for: 16, 24 or 32 bytes as they are, or their text form, base64
    (standard or URL-safe alphabet, padding optional; see :func:`generate_key`).

    Raises :class:`~sessionstore.ConfigurationError` naming the key's ``position`` in the list
    and what is wrong with it, never the key itself.
    """
    what = f"encryption key #{position}"
    if isinstance(key, bytearray | memoryview):
        key = bytes(key)
    if isinstance(key, str):
        text = key.strip()
        try:
            raw = base64.b64decode(
                text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True
            )
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"{what} is text but not base64: give 16, 24 or 32 bytes, or their base64 "
                "(sessionstore.encryption.generate_key() makes one)"
            ) from None
        if len(raw) not in _KEY_SIZES:
            raise ConfigurationError(
                f"{what} is base64 of {len(raw)} bytes; AES-GCM keys are 16, 24 or 32 bytes"
            )
        return raw
    if isinstance(key, bytes):
        if len(key) not in _KEY_SIZES:
            raise ConfigurationError(
                f"{what} is {len(key)} bytes; AES-GCM keys are 16, 24 or 32 bytes"
            )
        return key
    raise ConfigurationError(
        f"{what} is a {type(key).__name__}; give bytes (16, 24 or 32) or their base64 text"
    )


def _key_id(key: bytes) -> bytes:
    return hmac.digest(key, b"sessionstore encryption key id", "sha256")[:_KEY_ID_BYTES]


def _session_digest(session_id: str) -> bytes:
    return hashlib.sha256(b"sessionstore session\x00" + session_id.encode()).digest()[
        :_DIGEST_BYTES
    ]


class EncryptionMiddleware(PayloadTransform):
    """Encrypt session payloads and event data with AES-GCM (see the module docstring).

    ``keys``: newest first; each is 16, 24 or 32 bytes or their base64 text (see
    :func:`parse_key`). Writes use ``keys[0]``; every key reads. Refuses an empty list, a bad
    key and a key given twice, with :class:`~sessionstore.ConfigurationError`.

    ``accept_plaintext``: also read payloads and events that are not encrypted at all (written
    before the middleware was added), as they are; writes are always encrypted. Meant for the
    move to encryption, until ``sessionstore rekey`` has encrypted every record: it also lets
    whoever can write to the database plant records that read as genuine.

    Pass it as ``open_store(..., middleware=[EncryptionMiddleware(keys=[...])])``; one object
    serves any number of stores (each binds it to its namespace).
    """

    def __init__(self, keys: Sequence[bytes | str], *, accept_plaintext: bool = False) -> None:
        if isinstance(keys, str | bytes | bytearray) or not isinstance(keys, Iterable):
            raise ConfigurationError(
                "keys must be a list of keys, newest first (a single key goes in a list too)"
            )
        ciphers: dict[bytes, AESGCM] = {}
        for position, key in enumerate(keys, start=1):
            raw = parse_key(key, position=position)
            key_id = _key_id(raw)
            if key_id in ciphers:
                raise ConfigurationError(f"encryption key #{position} is given twice")
            ciphers[key_id] = AESGCM(raw)
        if not ciphers:
            raise ConfigurationError("EncryptionMiddleware needs at least one key")
        self._ciphers = ciphers
        self._newest = next(iter(ciphers))
        self._accept_plaintext = bool(accept_plaintext)
        self._namespace: bytes | None = None

    @classmethod
    def from_environment(cls, *, accept_plaintext: bool = False) -> EncryptionMiddleware:
        """The middleware with the keys of :data:`KEYS_ENVIRONMENT_VARIABLE`: their text forms,
        newest first, separated by commas or white space.

        Raises :class:`~sessionstore.ConfigurationError` when it is unset or empty.
        """
        text = os.environ.get(KEYS_ENVIRONMENT_VARIABLE, "")
        keys = text.replace(",", " ").split()
        if not keys:
            raise ConfigurationError(
                f"{KEYS_ENVIRONMENT_VARIABLE} is not set: give the encryption keys there, "
                "newest first, separated by commas"
            )
        return cls(keys, accept_plaintext=accept_plaintext)

    def __repr__(self) -> str:
        where = "" if self._namespace is None else f" namespace={self._namespace.decode()!r}"
        return f"<EncryptionMiddleware key_ids={list(self.key_ids)}{where}>"

    @property
    def key_ids(self) -> tuple[str, ...]:
        """The key ids (hex fingerprints, not the keys), newest first."""
        return tuple(key_id.hex() for key_id in self._ciphers)

    @property
    def newest_key_id(self) -> str:
        """The id of the key that writes."""
        return self._newest.hex()

    def bind_store(self, *, backend_name: str, namespace: str) -> EncryptionMiddleware:
        bound = copy.copy(self)  # shares the ciphers; only the namespace differs
        bound._namespace = namespace.encode()
        return bound

    # -- what a stored value says about itself ------------------------------------------------

    @staticmethod
    def key_id_of(value: bytes) -> str | None:
        """The key id an encrypted payload or event was written with, or ``None`` when it is not
        encrypted (or too short to say)."""
        if not value.startswith(ENCRYPTED_MAGIC) or len(value) < _PAYLOAD_HEADER:
            return None
        return value[len(ENCRYPTED_MAGIC) + 1 : _PAYLOAD_HEADER].hex()

    # -- payloads -------------------------------------------------------------------------------

    def seal_payload(self, session_id: str, payload: bytes) -> bytes:
        header = ENCRYPTED_MAGIC + bytes((_FORMAT,)) + self._newest
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._newest].encrypt(
            nonce, payload, self._payload_aad(session_id, header)
        )
        return header + nonce + sealed

    def open_payload(self, session_id: str, payload: bytes) -> bytes:
        if not payload.startswith(ENCRYPTED_MAGIC):
            return self._plaintext(session_id, payload, "payload")
        header, cipher = self._header(session_id, payload, _PAYLOAD_HEADER, "payload")
        return self._decrypt(
            session_id,
            cipher,
            payload,
            len(header),
            self._payload_aad(session_id, header),
            "payload",
        )

    # -- events ---------------------------------------------------------------------------------

    def seal_event(self, session_id: str, stream_id: str, data: bytes) -> bytes:
        header = ENCRYPTED_MAGIC + bytes((_FORMAT,)) + self._newest + _session_digest(session_id)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._ciphers[self._newest].encrypt(
            nonce, data, self._event_aad(stream_id, header)
        )
        return header + nonce + sealed

    def open_event(self, session_id: str | None, stream_id: str, data: bytes) -> bytes:
        name = session_id if session_id is not None else f"(the session of stream {stream_id!r})"
        if not data.startswith(ENCRYPTED_MAGIC):
            return self._plaintext(name, data, "event")
        header, cipher = self._header(name, data, _EVENT_HEADER, "event")
        if session_id is not None and header[_PAYLOAD_HEADER:] != _session_digest(session_id):
            raise DecryptionError(
                name,
                f"an event of stream {stream_id!r} belongs to another session (copied?)",
                key_id=header[len(ENCRYPTED_MAGIC) + 1 : _PAYLOAD_HEADER].hex(),
            )
        return self._decrypt(
            name, cipher, data, len(header), self._event_aad(stream_id, header), "event"
        )

    # -- the parts ------------------------------------------------------------------------------

    def _payload_aad(self, session_id: str, header: bytes) -> bytes:
        # NUL cannot occur in a namespace or a session id: the fields cannot run into each other.
        return b"payload\x00%s\x00%s\x00%s" % (self._bound(), session_id.encode(), header)

    def _event_aad(self, stream_id: str, header: bytes) -> bytes:
        # Stream ids are printable, so NUL-free too; the header holds the session's digest.
        return b"event\x00%s\x00%s\x00%s" % (self._bound(), stream_id.encode(), header)

    def _bound(self) -> bytes:
        if self._namespace is None:
            raise ConfigurationError(
                "EncryptionMiddleware is used through a store: pass it to open_store(middleware=)"
            )
        return self._namespace

    def _plaintext(self, session_id: str, value: bytes, what: str) -> bytes:
        if self._accept_plaintext:
            return value
        raise DecryptionError(
            session_id,
            f"the {what} is not encrypted (written without EncryptionMiddleware?); "
            "accept_plaintext=True reads such records while a store moves to encryption",
        )

    def _header(self, session_id: str, value: bytes, size: int, what: str) -> tuple[bytes, AESGCM]:
        if len(value) < size + _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError(session_id, f"the encrypted {what} is cut short")
        if len(value) > _MAX_SEALED:
            raise DecryptionError(
                session_id, f"the encrypted {what} of {len(value)} bytes exceeds the limit"
            )
        version = value[len(ENCRYPTED_MAGIC)]
        if version != _FORMAT:
            raise DecryptionError(
                session_id,
                f"encrypted in format {version}, which this release does not read "
                f"(it reads format {_FORMAT}): upgrade sessionstore",
            )
        key_id = value[len(ENCRYPTED_MAGIC) + 1 : _PAYLOAD_HEADER]
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(
                session_id,
                f"no key for key id {key_id.hex()}: add the key it was written with to "
                f"EncryptionMiddleware(keys=...) (known key ids: {', '.join(self.key_ids)})",
                key_id=key_id.hex(),
            )
        return value[:size], cipher

    def _decrypt(
        self,
        session_id: str,
        cipher: AESGCM,
        value: bytes,
        start: int,
        aad: bytes,
        what: str,
    ) -> bytes:
        nonce = value[start : start + _NONCE_BYTES]
        try:
            return cipher.decrypt(nonce, value[start + _NONCE_BYTES :], aad)
        except (InvalidTag, ValueError, OverflowError):
            # No cause chained: the caller learns what happened, not cryptography's internals.
            raise DecryptionError(
                session_id,
                f"the encrypted {what} does not authenticate: it was altered, cut short, or "
                "copied from another session, stream or namespace",
                key_id=self.key_id_of(value),
            ) from None
