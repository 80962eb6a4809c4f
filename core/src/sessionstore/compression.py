"""zstd compression of large payloads and events, as a middleware (``sessionstore[compression]``).

``open_store(spec, middleware=[CompressionMiddleware(threshold=1024)])`` compresses every payload
and event's data of at least ``threshold`` bytes, when that makes it smaller, and leaves the rest
as they are. A compressed value says so itself: ``MAGIC`` (``0xC1 "SSZ"``: msgpack never writes
``0xC1``, so no codec envelope starts with it), a format byte, then one zstd frame that records the
original size. So a store reads every value whatever the threshold was when it was written, and
values written before the middleware was added (no ``MAGIC``) read as they are. Event data is the
caller's own bytes and may start with ``MAGIC`` itself: such data is stored behind a header saying
"stored as it is" (format 0), so it never reads as compressed.

Reading is bounded: a frame that does not state its size, or states more than
:data:`~sessionstore.MAX_RECORD_BYTES`, is refused before anything is decompressed, and the
decompressor's window is capped the same way, so a hostile record costs at most that much memory.
What cannot be read raises :class:`~sessionstore.CorruptRecordError` naming the session.

With :class:`~sessionstore.encryption.EncryptionMiddleware`, give compression after encryption
(``middleware=[encryption, compression]``): the last one given seals first, so the plain bytes
are compressed and the compressed ones encrypted. The other way round compresses ciphertext,
which does not compress.
"""

from __future__ import annotations

import threading

from .codec import MAX_RECORD_BYTES
from .errors import ConfigurationError, CorruptRecordError
from .transforms import PayloadTransform

try:
    import zstandard
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "sessionstore.compression needs the zstandard package: "
        "pip install 'sessionstore[compression]'"
    ) from exc

__all__ = ["COMPRESSED_MAGIC", "CompressionMiddleware"]

COMPRESSED_MAGIC = b"\xc1SSZ"
"""The first bytes of every compressed payload or event (and of event data stored behind a
"stored as it is" header)."""

_STORED = 0  # the bytes that follow are the value as it was given
_ZSTD = 1  # one zstd frame follows, stating the value's size
_HEADER = len(COMPRESSED_MAGIC) + 1
# The window never exceeds the output here: a frame asking for more is refused (zstd's windows
# are powers of two, and MAX_RECORD_BYTES is one).
_MAX_WINDOW = MAX_RECORD_BYTES


class CompressionMiddleware(PayloadTransform):
    """Compress payloads and event data of at least ``threshold`` bytes with zstd at ``level``
    (see the module docstring).

    ``threshold`` (bytes, default 1024): smaller values are stored as they are, since zstd's
    frame costs more than it saves on them. ``level``: zstd's, 1 (fastest) to 22 (smallest);
    3 is zstd's own default. Bad values raise :class:`~sessionstore.ConfigurationError`.
    """

    def __init__(self, threshold: int = 1024, *, level: int = 3) -> None:
        if type(threshold) is not int or threshold < 0:
            raise ConfigurationError(f"threshold must be an int >= 0 (bytes), not {threshold!r}")
        if type(level) is not int or not 1 <= level <= 22:
            raise ConfigurationError(f"level must be an int from 1 to 22, not {level!r}")
        self.threshold = threshold
        self.level = level
        # zstd's contexts are not safe for use by two threads at once; stores of other threads
        # may share this object, so each thread gets its own.
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"<CompressionMiddleware threshold={self.threshold} level={self.level}>"

    def _compressor(self) -> zstandard.ZstdCompressor:
        compressor: zstandard.ZstdCompressor | None = getattr(self._local, "compressor", None)
        if compressor is None:
            compressor = self._local.compressor = zstandard.ZstdCompressor(
                level=self.level, write_content_size=True
            )
        return compressor

    def _decompressor(self) -> zstandard.ZstdDecompressor:
        decompressor: zstandard.ZstdDecompressor | None = getattr(self._local, "decompressor", None)
        if decompressor is None:
            decompressor = self._local.decompressor = zstandard.ZstdDecompressor(
                max_window_size=_MAX_WINDOW
            )
        return decompressor

    # -- sealing ------------------------------------------------------------------------------

    def _seal(self, value: bytes) -> bytes:
        if len(value) >= self.threshold:
            frame = self._compressor().compress(value)
            if len(frame) + _HEADER < len(value):
                return COMPRESSED_MAGIC + bytes((_ZSTD,)) + frame
        if value.startswith(COMPRESSED_MAGIC):  # would read as compressed: say it is not
            return COMPRESSED_MAGIC + bytes((_STORED,)) + value
        return value

    def seal_payload(self, session_id: str, payload: bytes) -> bytes:
        return self._seal(payload)

    def seal_event(self, session_id: str, stream_id: str, data: bytes) -> bytes:
        return self._seal(data)

    # -- opening ------------------------------------------------------------------------------

    def _open(self, session_id: str, value: bytes, what: str) -> bytes:
        if not value.startswith(COMPRESSED_MAGIC):
            return value
        if len(value) < _HEADER:
            raise CorruptRecordError(session_id, f"the compressed {what} is cut short")
        kind = value[len(COMPRESSED_MAGIC)]
        if kind == _STORED:
            return value[_HEADER:]
        if kind != _ZSTD:
            raise CorruptRecordError(
                session_id,
                f"compressed in format {kind}, which this release does not read: "
                "upgrade sessionstore",
            )
        frame = value[_HEADER:]
        try:
            size = zstandard.frame_content_size(frame)
        except zstandard.ZstdError:
            raise CorruptRecordError(
                session_id, f"the compressed {what} is not a zstd frame"
            ) from None
        if size < 0:  # -1: the frame does not say (this module always writes it)
            raise CorruptRecordError(session_id, f"the compressed {what} does not state its size")
        if size > MAX_RECORD_BYTES:
            raise CorruptRecordError(
                session_id,
                f"the compressed {what} claims {size} bytes, over the limit of "
                f"{MAX_RECORD_BYTES} (MAX_RECORD_BYTES): refused before decompressing",
            )
        try:
            data = self._decompressor().decompress(frame, max_output_size=MAX_RECORD_BYTES)
        except zstandard.ZstdError as exc:
            raise CorruptRecordError(
                session_id, f"the compressed {what} does not decompress ({exc})"
            ) from None
        if len(data) != size:
            raise CorruptRecordError(
                session_id, f"the compressed {what} holds {len(data)} bytes, not the {size} stated"
            )
        return data

    def open_payload(self, session_id: str, payload: bytes) -> bytes:
        return self._open(session_id, payload, "payload")

    def open_event(self, session_id: str | None, stream_id: str, data: bytes) -> bytes:
        name = session_id if session_id is not None else f"(the session of stream {stream_id!r})"
        return self._open(name, data, "event")
