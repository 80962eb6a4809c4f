"""sessionstore for MCP servers and proxies on the official SDK.

Install with ``pip install 'sessionstore[mcp]'``.

Several instances of an MCP server behind a load balancer serve any session, and a client whose
stream broke resumes it on any instance::

    from sessionstore.mcp import McpSessions

    sessions = McpSessions("redis://cache:6379/0", ttl=1800)
    mcp = FastMCP("demo", event_store=sessions.event_store)     # SDK 1.x
    app = sessions.wrap(mcp.streamable_http_app())

- :class:`McpSessions`: the roaming ASGI layer, the instance heartbeat and the event store.
- :class:`SessionEventStore`: the SDK's ``EventStore``, scoped by MCP session.
- :class:`ReplyRelay`: the client's answers to a tool's own requests (elicitation, sampling),
  delivered to the instance that asked.
- :class:`ProxySessions` and :func:`response_mode_for`: a proxy's sessions in a store.
- :func:`current_session`: inside a tool, the session's stable id and its state in the store.

Works with the SDK's 1.x and 2.x releases; see the documentation's MCP page.
"""

from .events import (
    GET_STREAM_ID,
    INTERRUPTED_ERROR_CODE,
    SessionEventStore,
    SessionScope,
    current_session_scope,
    session_scope,
)
from .instances import INSTANCE_ID_PREFIX, Heartbeat
from .limits import SessionLimits
from .proxy import ProxySessions, response_mode_for
from .replies import ASKS_METADATA_KEY, DEFAULT_REPLY_TIMEOUT, ReplyRelay
from .roaming import (
    DEFAULT_MAX_INITIALIZE_BYTES,
    MCP_METADATA_KEY,
    McpSessions,
    default_principal,
    layer_namespace,
)
from .state import (
    MAX_STATE_BYTES,
    STATE_METADATA_KEY,
    NoSessionError,
    SessionEndedError,
    SessionHandle,
    SessionState,
    StateTooLargeError,
    current_session,
)

__all__ = [
    "ASKS_METADATA_KEY",
    "DEFAULT_MAX_INITIALIZE_BYTES",
    "DEFAULT_REPLY_TIMEOUT",
    "GET_STREAM_ID",
    "INSTANCE_ID_PREFIX",
    "INTERRUPTED_ERROR_CODE",
    "MAX_STATE_BYTES",
    "MCP_METADATA_KEY",
    "STATE_METADATA_KEY",
    "Heartbeat",
    "McpSessions",
    "NoSessionError",
    "ProxySessions",
    "ReplyRelay",
    "SessionEndedError",
    "SessionEventStore",
    "SessionHandle",
    "SessionLimits",
    "SessionScope",
    "SessionState",
    "StateTooLargeError",
    "current_session",
    "current_session_scope",
    "default_principal",
    "layer_namespace",
    "response_mode_for",
    "session_scope",
]
