"""``sessionstore backends``: the installed backends, and a store's capabilities."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...capabilities import Capability
from ...errors import SessionStoreError
from ...plugins import installed_backends, load_backend_factory
from ...store import SessionStore
from ...urls import redact_url
from .. import output
from ..options import examples, json_flag, open_from, run, store_options
from ..root import cli


@dataclass
class _BackendEntry:
    distribution: str | None
    version: str | None
    entry_point: str
    schemes: list[str]
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "distribution": self.distribution,
            "version": self.version,
            "entry_point": self.entry_point,
            "schemes": self.schemes,
            "error": self.error,
        }


def _installed_backend_entries() -> list[_BackendEntry]:
    """Every installed backend, one entry per distribution and entry point with all the names
    (URL schemes) it registers. Each is imported to check it loads; one that does not keeps its
    error instead of breaking the listing."""
    entries: dict[tuple[str | None, str | None, str], _BackendEntry] = {}
    for name, info in sorted(installed_backends().items()):
        key = (info.distribution, info.version, info.value)
        entry = entries.setdefault(key, _BackendEntry(*key, schemes=[]))
        entry.schemes.append(name)
        try:
            load_backend_factory(name)
        except SessionStoreError as exc:
            entry.error = entry.error or output.one_line(str(exc))
    return list(entries.values())


def _capabilities_of(store: SessionStore) -> dict[str, str | None]:
    """Every capability: ``None`` when the store has it, else the reason it lacks it."""
    lacking = store.capabilities
    return {capability.value: lacking.get(capability) for capability in Capability}


@cli.command(
    epilog=examples(
        "sessionstore backends",
        "sessionstore backends --store redis+cluster://10.0.0.1:7000 --json",
    )
)
@store_options()
@json_flag
def backends(store_url: str | None, namespace: str, options: dict[str, Any], as_json: bool) -> None:
    """List the installed backends: distribution, version, URL schemes, and whether each loads.

    A backend that fails to import is listed with its error. Capabilities are declared by a store
    and can depend on its configuration (a Redis Cluster lacks atomic batches across slots):
    with --store (or SESSIONSTORE_URL), the capabilities of that store are listed too. Opening it
    does not contact the server.
    """
    entries = _installed_backend_entries()
    store_info: dict[str, Any] | None = None
    if store_url:
        store = open_from(store_url, namespace, options)
        try:
            store_info = {
                "store": redact_url(store_url),
                "backend": store.backend_name,
                "capabilities": _capabilities_of(store),
            }
        finally:
            run(store.aclose())
    if as_json:
        output.emit_json(
            {"backends": [e.as_dict() for e in entries], "store": store_info}, indent=2
        )
        return
    rows = [
        (
            e.distribution or "?",
            e.version or "?",
            ", ".join(e.schemes),
            "ok" if e.error is None else f"error: {e.error}",
        )
        for e in entries
    ]
    output.Table(
        ("DISTRIBUTION", "VERSION", "URL SCHEMES", "STATUS"),
        roles=lambda column, cell: None if column < 3 else ("good" if cell == "ok" else "bad"),
    ).print(rows)
    if not entries:
        output.echo("(no backend installed: pip install sessionstore-sqlite, for one)")
    output.echo()
    if store_info is None:
        output.echo(
            "Capabilities depend on a store's configuration: add --store URL to list one's."
        )
        return
    output.echo(f"capabilities of {store_info['store']} (backend {store_info['backend']}):")
    width = max(len(c.value) for c in Capability)
    for capability, reason in store_info["capabilities"].items():
        verdict = output.paint("yes", "good") if reason is None else "no: " + reason
        output.echo(f"  {capability.ljust(width)}  {verdict}")
