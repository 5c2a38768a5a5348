"""``python -m candor.cli``: the same as the ``candor`` command."""

from candor.cli import main

main()
