"""A griffe extension for the documentation site: Sphinx roles in docstrings become links.

The docstrings of ``sessionstore`` use Sphinx cross-reference roles (``:class:`~sessionstore.X```),
which Markdown does not know. Before mkdocstrings renders a docstring, each role becomes

* a cross-reference link (``[`X`][sessionstore.X]``) when it names something the package exports
  from ``sessionstore`` (its ``__all__``) or a module the site documents: those are rendered by the
  API and hookspec reference pages, and ``mkdocs build --strict`` fails if a link has no target;
* plain inline code otherwise (private helpers, relative method names, other modules).

``~`` keeps only the last component of the name as the text, as Sphinx does; ``text <target>``
uses ``text``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["SphinxRoles"]

_ROLE = re.compile(r":(?:py:)?(class|func|meth|attr|data|exc|mod|obj|const):`([^`]+)`")
_EXPLICIT = re.compile(r"(?P<text>.+?)\s*<(?P<target>[^>]+)>\Z")
# Documented modules: each has a ``::: module`` block on a page of the site.
_DOCUMENTED_MODULES = {"sessionstore.hookspecs"}


def _exported() -> frozenset[str]:
    import sessionstore

    return frozenset(sessionstore.__all__)


class SphinxRoles(griffe.Extension):
    """Rewrites Sphinx roles in every docstring griffe loads (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._exported = _exported()

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(self._replace, obj.docstring.value)

    def _replace(self, match: re.Match[str]) -> str:
        role, body = match[1], match[2].strip()
        explicit = _EXPLICIT.match(body)
        if explicit:
            text, target = explicit["text"], explicit["target"]
        else:
            target = body.lstrip("~")
            text = target.rsplit(".", 1)[-1] if body.startswith("~") else target
        if role in ("func", "meth"):
            text += "()"
        identifier = self._identifier(role, target)
        if identifier is None:
            return f"`{text}`"
        return f"[`{text}`][{identifier}]"

    def _identifier(self, role: str, target: str) -> str | None:
        if role == "mod":
            return target if target in _DOCUMENTED_MODULES else None
        parts = target.split(".")
        if parts[0] == "sessionstore":
            parts = parts[1:]
            # sessionstore.errors.X is exported as sessionstore.X
            if len(parts) > 1 and parts[0] not in self._exported:
                parts = parts[1:]
        if not parts or parts[0] not in self._exported:
            return None
        return ".".join(["sessionstore", *parts])
