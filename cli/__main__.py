"""``python -m cli``: the same as the ``imageextract`` command."""

from cli.main import run

run()
