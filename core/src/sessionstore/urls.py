"""Store specs: a backend name or a URL whose scheme names the backend; splitting such a URL into
its parts; and redacting its secrets out of anything printed.

One rule finds a URL's userinfo for both the parser and the redaction, so what one takes for a
password the other masks: after ``scheme://``, the userinfo runs to the *last* ``@``. A password
may therefore hold any character, ``/ ? # @ :`` included, as base64 passwords do (percent-encoding
it is still the portable spelling, and a ``%`` in it must be written ``%25``). No message built here
quotes any part of a password, however the URL is spelled; a URL whose userinfo cannot be told
apart from the rest is masked whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from .errors import ConfigurationError

__all__ = ["StoreURL", "backend_name_of", "parse_url", "redact_text", "redact_url"]

_NAME = re.compile(r"[a-z][a-z0-9_.+-]*\Z")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")
_QUERY_PASSWORD = re.compile(r"(?i)([?&;])(password|pass|pwd)=[^&;#]*")
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_NOT_IN_A_USER_NAME = frozenset("/?#")
"""Where these stand unencoded before the last ``@``, the userinfo cannot be told from a path,
query or fragment."""


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


@dataclass(frozen=True, repr=False)
class StoreURL:
    """A store URL split into its parts by :func:`parse_url`; its repr is its :attr:`display`.

    ``username`` and ``password`` are percent-decoded; ``None`` when the URL has no userinfo
    (``username``) or no ``:`` in it (``password``); ``""`` when written empty
    (``redis://:secret@host`` has the user name ``""``). The rest is as written: ``host`` is all
    of the authority after the userinfo (``h1:7000,h2:7001``, ``[::1]:6379``, ``""``), ``path``
    starts with ``/`` or is empty, ``query`` and ``fragment`` are ``None`` when absent.
    """

    scheme: str
    """Lower-cased."""
    username: str | None
    password: str | None
    host: str
    path: str
    query: str | None
    fragment: str | None
    display: str
    """The URL with its password masked (:func:`redact_url`): what messages show."""

    def __repr__(self) -> str:
        # Only the redacted whole: a part (a "path" after "///", say) may hold a password.
        return f"StoreURL({self.display!r})"


def parse_url(url: str, *, what: str = "store spec") -> StoreURL:
    """Split ``scheme://[userinfo@]host[/path][?query][#fragment]`` into a :class:`StoreURL`.

    The userinfo runs to the last ``@`` after ``scheme://`` (unless ``//`` is followed by ``/``: no
    authority, as in ``sqlite:///a@b.db``), so its password may hold any character. Raises
    :class:`~sessionstore.ConfigurationError`, with ``what`` naming the spec in the message and
    the URL shown redacted, for a string that is not ``scheme://...`` or whose user name holds an
    unencoded ``/``, ``?`` or ``#`` (the userinfo cannot then be told apart from a path, query or
    fragment). Which parts a backend accepts is for it to check.
    """
    display = redact_url(url)
    scheme = _SCHEME.match(url)
    if scheme is None or not url.startswith("//", scheme.end()):
        raise ConfigurationError(f"{what} {display!r} is not a URL of the form scheme://...")
    rest = url[scheme.end() + 2 :]
    username = password = None
    if "@" in rest and not rest.startswith("/"):
        userinfo, _, rest = rest.rpartition("@")
        user, colon, secret = userinfo.partition(":")
        if not _NOT_IN_A_USER_NAME.isdisjoint(user):
            raise ConfigurationError(
                f"{what} {display!r}: the part before its last '@' is not user:password (an "
                "unencoded '/', '?' or '#' precedes the first ':'); percent-encode them in the "
                "user name"
            )
        username = unquote(user)
        password = unquote(secret) if colon else None
    rest, has_fragment, fragment = rest.partition("#")
    rest, has_query, query = rest.partition("?")
    host, slash, path = rest.partition("/")
    return StoreURL(
        scheme=scheme.group()[:-1].lower(),
        username=username,
        password=password,
        host=host,
        path=slash + path,
        query=query if has_query else None,
        fragment=fragment if has_fragment else None,
        display=display,
    )


def redact_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***``; safe for reprs, logs and errors.

    ``redis://user:secret@host/0`` -> ``redis://user:***@host/0``; a ``password=`` query parameter
    is masked too. The userinfo is found as :func:`parse_url` finds it (up to the last ``@``). When
    it cannot be told apart from the rest (an unencoded ``/``, ``?`` or ``#`` in it, or no
    ``scheme://`` before it: ``user:secret@host``, ``:secret@host``), all of it is masked:
    ``redis://:Zq9x/Wk7=@host`` -> ``redis://***@host``; that includes an ``@`` in a path
    (``sqlite:///a@b.db`` -> ``sqlite://***@b.db``), which cannot be told from a password whose
    ``//`` became ``///``. A user name alone (``redis://app@host``) is shown. Nothing else
    changes: a URL without an ``@`` or a password comes back as it was.
    """
    scheme = _SCHEME.match(url)
    head = url[: scheme.end()] if scheme else ""
    slashes = "//" if url.startswith("//", len(head)) else ""
    rest = url[len(head) + len(slashes) :]
    at = rest.rfind("@")
    redacted = url
    if at >= 0:
        userinfo = rest[:at]
        if head and slashes and not userinfo.startswith("/"):  # an authority
            user, colon, _ = userinfo.partition(":")
            if not _NOT_IN_A_USER_NAME.isdisjoint(userinfo):
                shown = "***"
            else:
                shown = f"{user}:***" if colon else user
        else:  # no authority, yet something@: it may be user:password short of a "/"
            shown = "***"
        redacted = f"{head}{slashes}{shown}{rest[at:]}"
    return _QUERY_PASSWORD.sub(r"\1\2=***", redacted)


def redact_text(text: str) -> str:
    """Return ``text`` with every ``scheme://...`` URL in it passed through :func:`redact_url`.

    A URL ends at whitespace or a quote here, so a password holding those is only safe if the
    text was built from already redacted URLs (as every message of sessionstore is).
    """
    return _URL_IN_TEXT.sub(lambda match: redact_url(match.group()), text)
