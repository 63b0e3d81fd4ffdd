"""`python -m refarch` runs the command line."""

from refarch.cli import main

main()
