"""Encryption keys: ``rekey``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import output
from ..options import (
    CommandFailed,
    describe,
    examples,
    json_flag,
    open_from,
    plural,
    progress_flag,
    run,
    store_options,
)
from ..root import cli

if TYPE_CHECKING:
    from ...encryption import EncryptionMiddleware
    from ...rekey import RekeyReport

RESUME = "interrupted; run the same command again to resume"


def _keys(keys_file: Path | None, accept_plaintext: bool) -> EncryptionMiddleware:
    """The middleware of the keys in ``keys_file`` (one text key per line, newest first, ``#``
    comments), else of SESSIONSTORE_ENCRYPTION_KEYS. Imported here: the rest of the command line
    works without the cryptography package."""
    try:
        from ...encryption import EncryptionMiddleware
    except ImportError as exc:
        raise CommandFailed(str(exc)) from None
    if keys_file is None:
        return EncryptionMiddleware.from_environment(accept_plaintext=accept_plaintext)
    try:
        lines = keys_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandFailed(f"cannot read the keys file {keys_file}: {exc}") from None
    keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return EncryptionMiddleware(keys, accept_plaintext=accept_plaintext)


@cli.command(
    epilog=examples(
        "SESSIONSTORE_ENCRYPTION_KEYS=NEW,OLD sessionstore rekey --store sqlite:///sessions.db",
        "sessionstore rekey --store redis://localhost:6379/0 --keys-file keys.txt "
        "--checkpoint rekey.json",
        "sessionstore rekey --store sqlite:///sessions.db --accept-plaintext --json",
    )
)
@store_options()
@click.option(
    "--keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The encryption keys, one per line, newest first "
    "[default: SESSIONSTORE_ENCRYPTION_KEYS, comma-separated].",
)
@click.option(
    "--accept-plaintext",
    is_flag=True,
    help="Also encrypt records that are not encrypted yet (a store moving to encryption).",
)
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A file recording progress: rerunning the command starts after the last page done.",
)
@progress_flag
@json_flag
def rekey(
    store_url: str | None,
    namespace: str,
    options: dict[str, Any],
    keys_file: Path | None,
    accept_plaintext: bool,
    checkpoint: Path | None,
    progress: bool | None,
    as_json: bool,
) -> None:
    """Rewrite every session record under the newest encryption key.

    Each record not under the newest key is decrypted with the key it names and written back
    under the newest, by compare-and-set: a concurrent writer is never overwritten (its version
    is read and rekeyed instead). Deadlines are kept. Memory stays bounded whatever the size.
    Running it again skips what is already under the newest key; with --checkpoint an
    interrupted run starts after the last page it finished. Events keep the key they were
    written with until they age out (rewriting them would change their ids, which clients
    resume from): the report counts them by key id, so keep those keys in the list. Fails when a
    record cannot be decrypted (no key for its key id).
    """
    from ...rekey import rekey as rekey_store
    from ...rekey import rekey_checkpoint

    encryption = _keys(keys_file, accept_plaintext)
    where = describe(store_url or "", namespace)
    tracker = (
        rekey_checkpoint(
            checkpoint,
            store=store_url or "",
            namespace=namespace,
            newest_key_id=encryption.newest_key_id,
        )
        if checkpoint is not None
        else None
    )

    async def rewrite() -> RekeyReport:
        async with open_from(store_url, namespace, options) as store:
            total = await store.count_sessions()
            with output.progress_bar("rekeying", total, progress) as bar:
                return await rekey_store(store, encryption, checkpoint=tracker, progress=bar)

    started = time.monotonic()
    report = run(rewrite(), on_interrupt=RESUME)
    elapsed = time.monotonic() - started
    if as_json:
        output.emit_json({"store": where, "seconds": round(elapsed, 3), **report.as_json()})
    else:
        resumed = " (resumed from the checkpoint)" if report.resumed else ""
        output.echo(f"rekeyed {where} to key id {report.newest_key_id} in {elapsed:.1f} s")
        output.echo(
            f"  {plural(report.visited, 'session')} visited{resumed}: {report.rewritten} "
            f"rewritten, {report.current} already current, {report.gone} gone meanwhile, "
            f"{plural(report.conflicts, 'conflict')} retried"
        )
        for key_id, count in sorted(report.old_event_keys.items()):
            output.echo(
                f"  {plural(count, 'event')} still under key id {key_id}: keep that key "
                "until they age out"
            )
        for line in report.unreadable_ids:
            output.echo(f"  unreadable: {output.one_line(line)}")
    if not report.ok:
        raise CommandFailed(
            f"{plural(report.unreadable, 'record')} could not be decrypted and were left as "
            "they are" + (" (listed in unreadable_ids)" if as_json else " (listed above)")
        )
    if not as_json:
        output.echo(f"  {output.paint('ok', 'good')}: every record visited is under the newest key")
