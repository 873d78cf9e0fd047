"""`python -m mr` is the `mr` command."""

from mr.cli import main

main()
