"""``python -m neuroscaffold``: the command line (see :mod:`neuroscaffold.cli`)."""

from .cli import program

program()
