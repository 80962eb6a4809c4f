"""The commands, one module per group; each registers its commands on
:data:`sessionstore.cli.root.cli` when imported, and :mod:`sessionstore.cli` imports every module
here. A new command is a new module."""
