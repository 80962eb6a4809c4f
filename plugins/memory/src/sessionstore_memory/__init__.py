"""sessionstore-memory: the in-process sessionstore backend.

Select it with ``open_store("memory")`` (a private store) or ``open_store("memory://NAME")`` (one
store shared by every handle with that NAME in the process). Option: ``max_sessions``.
"""

from .backend import MemoryBackend, create_backend

__all__ = ["MemoryBackend", "create_backend"]
