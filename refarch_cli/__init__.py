"""The `refarch` command line: the composition root of every runtime.

It wires settings into the runtime library (`refarch`) and, for the local-only subcommands, loads
the one-machine runtime (`refarch_local`), which the container image does not ship.
"""
