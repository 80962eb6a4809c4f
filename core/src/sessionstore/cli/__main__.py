"""``python -m sessionstore.cli``: the ``sessionstore`` command."""

from . import main

main()
