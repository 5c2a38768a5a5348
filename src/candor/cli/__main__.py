"""``python -m candor.cli``: the same as the ``candor`` console script."""

from candor.cli import main

main()
