"""sessionstore-files: a sessionstore backend keeping one file per session in a directory.

Select it with ``open_store("files:///var/lib/sessions")``. Option: ``fsync`` (default ``True``).
It is an example of a third-party backend: it uses only the public ``sessionstore`` API.
"""

from .backend import FORMAT_VERSION, FilesBackend, create_backend, directory_of, file_name

__all__ = ["FORMAT_VERSION", "FilesBackend", "create_backend", "directory_of", "file_name"]
