"""`python -m doppel` runs the command-line tool."""

from doppel.cli import main

main()
