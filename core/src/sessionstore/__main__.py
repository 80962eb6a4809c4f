"""``python -m sessionstore``: the ``sessionstore`` command (see :mod:`sessionstore.cli`)."""

from .cli import main

main()
