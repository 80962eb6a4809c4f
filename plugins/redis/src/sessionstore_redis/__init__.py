"""The Redis backend of sessionstore (``redis``, ``redis://``, ``rediss://``, ``redis+cluster://``)."""

from __future__ import annotations

from .backend import RedisBackend, create_backend

__all__ = ["RedisBackend", "create_backend"]
