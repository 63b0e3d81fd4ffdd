"""`python -m refarch_cli` runs the `refarch` command line."""

from refarch_cli.commands import main

main()
