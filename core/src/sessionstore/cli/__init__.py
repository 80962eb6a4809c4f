"""The ``sessionstore`` command: inspect, export, import, migrate, check and benchmark any store.

Run ``sessionstore --help``; every command's ``--help`` ends with examples. The commands that open
a store take ``--store URL`` (or the ``SESSIONSTORE_URL`` environment variable), ``--namespace``
(or ``SESSIONSTORE_NAMESPACE``) and ``--option KEY=VALUE`` for backend options.

Exit status: 0 on success (a reader closing stdout early, as ``| head`` does, included), 1 when an
operation failed (a bad or unreachable store, a missing session, a failed check), 2 for a usage
error, 130 when interrupted. A failure is always one line on stderr, never a traceback (with
``--json``, a JSON object); every store spec is shown with its password redacted.

The shape: :mod:`.root` is the root command and its failure handling, :mod:`.output` renders
everything (tables, JSON, colour, notes, failures), :mod:`.options` holds what commands share, and
each module of :mod:`.commands` holds one group of commands, registered on import. Adding a command
means adding a module there.

This package is imported only by the console script: ``import sessionstore`` does not import click.
"""

from __future__ import annotations

import importlib
import pkgutil

from . import commands
from .root import cli, main

__all__ = ["cli", "main"]

for _module in sorted(info.name for info in pkgutil.iter_modules(commands.__path__)):
    importlib.import_module(f"{commands.__name__}.{_module}")
