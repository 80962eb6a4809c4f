"""Who makes a request, as the layer keeps it: a principal (see :func:`default_principal`) and,
under the SDK's own auth, the SDK's owner (client id, issuer, subject), both only as digests."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, authorization_context

from ._asgi import Scope

__all__ = [
    "Principal",
    "default_principal",
    "owner_digest",
    "principal_digest",
    "request_identity",
    "sdk_user_parts",
]

Principal = Callable[[Scope], "str | None"]


def sdk_user_parts(user: object) -> list[str | None] | None:
    """The client id, issuer and subject of the SDK's ``AuthenticatedUser`` (what the SDK itself
    compares to tell a session's owner), or ``None`` for any other user."""
    if not isinstance(user, AuthenticatedUser):
        return None
    context = authorization_context(user)
    return [context["client_id"], context["issuer"], context["subject"]]


def default_principal(scope: Scope) -> str | None:
    """Who makes the request: the authenticated user Starlette's ``AuthenticationMiddleware``
    put in ``scope["user"]`` (the SDK's own bearer auth included), or ``None`` when anonymous.

    For the SDK's ``AuthenticatedUser`` it is the token's client id, issuer and subject, what the
    SDK itself compares; for another authenticated user, its ``display_name``."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    parts = sdk_user_parts(user)
    if parts is not None:
        return "\x1f".join("" if part is None else str(part) for part in parts)
    name = getattr(user, "display_name", None) or getattr(user, "username", None)
    return None if name is None else str(name)


def principal_digest(principal: str | None) -> str:
    """What is kept of a principal: a digest, so the store holds no user names."""
    if principal is None:
        return "anonymous"
    return hashlib.sha256(principal.encode("utf-8", "surrogatepass")).hexdigest()


def owner_digest(scope: Scope) -> str | None:
    """A digest of the principal the SDK's own auth compares (client id, issuer, subject of the
    SDK's ``AuthenticatedUser``), or ``None`` when the SDK's auth did not authenticate it."""
    parts = sdk_user_parts(scope.get("user"))
    if parts is None:
        return None
    # (Encoded unlike default_principal's: this digest is kept in stored sessions as it is.)
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def request_identity(principal: Principal, scope: Scope) -> tuple[str, str | None]:
    """Who the layer takes a request for: its principal's digest and the SDK's owner digest."""
    return principal_digest(principal(scope)), owner_digest(scope)
