"""ASGI plumbing of the roaming layer: the ASGI types, request and response helpers, and the one
place that walks an app's object graph (routers, routes, mounts, middleware) to find the SDK's
route, the app's authentication and the holders of session managers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import Mount, Route, Router

__all__ = [
    "MAX_BODY",
    "ASGIApp",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "buffered",
    "find_route",
    "has_authentication",
    "header",
    "header_of",
    "holders",
    "replaying",
    "router_of",
    "too_large",
    "under",
    "with_header",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 4 * 1024 * 1024  # the SDK's own default limit
# The attributes an ASGI app, a Starlette router, route, mount or middleware keeps what it wraps
# or routes to in; a walk through them finds the objects that hold a session manager.
_WRAPPING = ("app", "router", "routes", "endpoint", "_app")
_MAX_OBJECTS = 10_000  # a walk visits at most this many objects (an app is a few dozen)


# -- headers and bodies ------------------------------------------------------------------------


def under(path: str, prefix: str) -> bool:
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def header(scope: Scope, name: bytes) -> str | None:
    return header_of(scope["headers"], name)


def header_of(headers: Any, name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


def with_header(headers: Any, name: bytes, value: str) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != name]
    kept.append((name, value.encode("latin-1")))
    return kept


async def buffered(receive: Receive) -> tuple[bytes | None, Receive]:
    """Read the whole request body; return it (``None`` when over the limit) and a ``receive``
    that hands it out again, then waits on the client as the original does."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None, receive
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    return body, replaying(body, receive)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands out ``body`` once, then waits on the client as ``receive`` does."""
    replayed = False

    async def receive_again() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again


async def too_large(send: Send) -> None:
    """The SDK's answer to a body over its ``max_request_body_size`` (plain text)."""
    body = b"Request body too large"
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# -- the app's object graph --------------------------------------------------------------------


def router_of(app: Any) -> Router | None:
    """The router of ``app``, or of the app its middleware (``.app``, a few levels) lead to."""
    for _ in range(32):
        if isinstance(app, Starlette):
            return app.router
        if isinstance(app, Router):
            return app
        app = getattr(app, "app", None)
        if app is None:
            return None
    return None


def find_route(app: Any, path: str, prefix: str = "", depth: int = 0) -> Route | None:
    router = router_of(app)
    if router is None or depth > 8:
        return None
    for route in router.routes:
        if isinstance(route, Route) and prefix + route.path == path:
            return route
        if isinstance(route, Mount) and path.startswith(prefix + route.path):
            found = find_route(route.app, path, prefix + route.path, depth + 1)
            if found is not None:
                return found
    return None


def has_authentication(app: Any) -> bool:
    """Whether ``app`` (or an app its middleware lead to) runs Starlette's
    ``AuthenticationMiddleware``, as the SDK's own auth does."""
    for _ in range(32):
        if isinstance(app, AuthenticationMiddleware):
            return True
        if isinstance(app, Starlette):
            classes: list[object] = [m.cls for m in app.user_middleware]
            return AuthenticationMiddleware in classes
        app = getattr(app, "app", None)
        if app is None:
            return False
    return False


def holders(app: object) -> list[Any]:
    """The objects behind ``app`` that hold a session manager (an attribute ``session_manager``:
    FastMCP's and the SDK's ``StreamableHTTPASGIApp``), found through the attributes routers,
    routes, mounts and middleware keep what they wrap in."""
    found: list[Any] = []
    seen: set[int] = set()
    pending: list[object] = [app]
    while pending and len(seen) < _MAX_OBJECTS:
        item = pending.pop()
        if id(item) in seen or item is None or isinstance(item, (str, bytes, int, float)):
            continue
        seen.add(id(item))
        if isinstance(item, (list, tuple)):
            pending.extend(item)
            continue
        if "session_manager" in getattr(item, "__dict__", {}):
            found.append(item)
        for name in _WRAPPING:
            try:
                pending.append(getattr(item, name, None))
            except Exception:  # a property that raises: nothing behind it
                continue
    return found
