"""The PostgreSQL backend of sessionstore (``postgres``, ``postgresql://``, ``postgres://``).

Options: ``schema``, ``min_size``, ``max_size``, ``timeout``, ``connect_timeout``,
``statement_cache_size``, ``notify`` (see :func:`create_backend`).
"""

from __future__ import annotations

from .backend import PostgresBackend, create_backend
from .notify import pg_notify_channel
from .schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "PostgresBackend", "create_backend", "pg_notify_channel"]
