"""Store specs: a backend name or a URL whose scheme names the backend; and password redaction."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigurationError

__all__ = ["backend_name_of", "redact_url"]

_NAME = re.compile(r"[a-z][a-z0-9_.+-]*\Z")


def backend_name_of(spec: str) -> str:
    """Return the backend a spec names: ``"memory"`` -> ``memory``, ``"redis://h"`` -> ``redis``.

    Raises :class:`~sessionstore.ConfigurationError` for a spec that is neither.
    """
    if not isinstance(spec, str):
        raise ConfigurationError(f"a store spec must be a str, not {type(spec).__name__}")
    name = spec.partition(":")[0].lower() if ":" in spec else spec.strip().lower()
    if not _NAME.match(name):
        raise ConfigurationError(
            f"store spec {redact_url(spec)!r} is neither a backend name nor a URL "
            "(expected e.g. 'memory', 'sqlite:///sessions.db', 'redis://localhost:6379/0')"
        )
    return name


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``; safe for reprs, logs and errors.

    ``redis://user:secret@host/0`` -> ``redis://user:***@host/0``; a ``password=`` query parameter
    is masked too. A string that does not parse is returned with everything after the scheme's
    ``//`` up to the last ``@`` masked.
    """
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user, has_password, _ = userinfo.partition(":")
            netloc = f"{user}:***@{hostport}" if has_password else f"{user}@{hostport}"
        query = re.sub(r"(?i)(^|&)(password|pass|pwd)=[^&]*", r"\1\2=***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return re.sub(r"//.*@", "//***@", url)
