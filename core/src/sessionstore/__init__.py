"""sessionstore: shared, resumable session storage for MCP proxies, gateways and servers.

Everything a user or a backend author needs imports from here::

    from sessionstore import open_store, Session, TransportType, ResponseMode

    async with open_store("sqlite:///sessions.db", ttl=3600) as store:
        session = await store.create_session(Session(transport=TransportType.HTTP))
"""

from importlib.metadata import PackageNotFoundError, version

from .capabilities import Capability
from .codec import (
    ENVELOPE_VERSION,
    MAX_RECORD_BYTES,
    MAX_RECORD_DEPTH,
    MAX_RECORD_ITEMS,
    decode_session,
    encode_session,
)
from .errors import (
    BackendError,
    BackendLoadError,
    BenchmarkCheckError,
    ConfigurationError,
    ConflictError,
    CorruptRecordError,
    DecryptionError,
    EventNotFoundError,
    ExportFormatError,
    InvalidSessionError,
    SessionExistsError,
    SessionNotFoundError,
    SessionStoreError,
    StoreClosedError,
    StoreFullError,
    StoreUnavailableError,
    TransferError,
    UnknownBackendError,
    WrongEventLoopError,
)
from .fallback import FallbackConflict, FallbackMiddleware
from .hookspecs import hookimpl
from .metrics import MetricsMiddleware, OperationStats
from .middleware import OperationMiddleware
from .models import (
    MAX_SESSION_ID_LENGTH,
    ResponseMode,
    Session,
    SessionStatus,
    TransportType,
    new_session_id,
    validate_session_id,
)
from .plugins import ENTRY_POINT_GROUP, BackendInfo, installed_backends
from .records import Event, SessionDump, SessionRecord
from .store import (
    MAX_BATCH_SIZE,
    MAX_DEADLINE_MS,
    MAX_EVENT_ID_LENGTH,
    MAX_STREAM_ID_LENGTH,
    MAX_TTL_SECONDS,
    SessionStore,
    open_store,
)
from .urls import redact_url
from .watching import EventWatch, WatchHub

try:
    __version__ = version("sessionstore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "ENTRY_POINT_GROUP",
    "ENVELOPE_VERSION",
    "MAX_BATCH_SIZE",
    "MAX_DEADLINE_MS",
    "MAX_EVENT_ID_LENGTH",
    "MAX_RECORD_BYTES",
    "MAX_RECORD_DEPTH",
    "MAX_RECORD_ITEMS",
    "MAX_SESSION_ID_LENGTH",
    "MAX_STREAM_ID_LENGTH",
    "MAX_TTL_SECONDS",
    "BackendError",
    "BackendInfo",
    "BackendLoadError",
    "BenchmarkCheckError",
    "Capability",
    "ConfigurationError",
    "ConflictError",
    "CorruptRecordError",
    "DecryptionError",
    "Event",
    "EventNotFoundError",
    "EventWatch",
    "ExportFormatError",
    "FallbackConflict",
    "FallbackMiddleware",
    "InvalidSessionError",
    "MetricsMiddleware",
    "OperationMiddleware",
    "OperationStats",
    "ResponseMode",
    "Session",
    "SessionDump",
    "SessionExistsError",
    "SessionNotFoundError",
    "SessionRecord",
    "SessionStatus",
    "SessionStore",
    "SessionStoreError",
    "StoreClosedError",
    "StoreFullError",
    "StoreUnavailableError",
    "TransferError",
    "TransportType",
    "UnknownBackendError",
    "WatchHub",
    "WrongEventLoopError",
    "__version__",
    "decode_session",
    "encode_session",
    "hookimpl",
    "installed_backends",
    "new_session_id",
    "open_store",
    "redact_url",
    "validate_session_id",
]
