"""Store specs: a backend name or a URL whose scheme names the backend; and password redaction."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from .errors import ConfigurationError

__all__ = ["backend_name_of", "redact_text", "redact_url"]

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
    is masked too. Nothing else changes: a URL without a password comes back as it was. A string
    that does not parse cleanly (say, a password with an unencoded ``/``, ``?`` or ``#``) is
    returned with everything after the scheme's ``//`` up to the last ``@`` masked.
    """
    try:
        netloc: str | None = urlsplit(url).netloc
    except ValueError:
        netloc = None
    redacted = url
    if netloc is not None and "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        if has_password:
            redacted = url.replace(f"//{netloc}", f"//{user}:***@{hostport}", 1)
            if redacted == url:  # urlsplit dropped characters (tabs, newlines): mask broadly
                redacted = _mask_userinfo(url)
    elif netloc is None or _hidden_userinfo(url):
        redacted = _mask_userinfo(url)
    return _QUERY_PASSWORD.sub(r"\1\2=***", redacted)


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """Return ``text`` with every URL in it passed through :func:`redact_url`."""
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)


_QUERY_PASSWORD = re.compile(r"(?i)([?&;])(password|pass|pwd)=[^&;#]*")


def _hidden_userinfo(url: str) -> bool:
    """Whether ``user:password@`` may hide after ``//`` where urlsplit did not find it."""
    after = url.partition("//")[2]
    return "@" in after and ":" in after.rpartition("@")[0]


def _mask_userinfo(url: str) -> str:
    return re.sub(r"(?s)//.*@", "//***@", url)
