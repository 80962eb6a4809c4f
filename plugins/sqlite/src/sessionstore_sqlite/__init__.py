"""sessionstore-sqlite: the embedded, persistent sessionstore backend, the default.

Select it with ``open_store("sqlite")`` (the file ``sessionstore.db`` in the working directory),
``open_store("sqlite:///relative/path.db")`` or ``open_store("sqlite:////absolute/path.db")``.
Options: ``busy_timeout`` (seconds, default 5), ``synchronous`` (``normal`` or ``full``).
"""

from .backend import DEFAULT_PATH, SQLiteBackend, create_backend, database_path
from .schema import SCHEMA_VERSION

__all__ = ["DEFAULT_PATH", "SCHEMA_VERSION", "SQLiteBackend", "create_backend", "database_path"]
