"""One module per CLI subcommand; each defines ``register(subparsers, groups)`` (see cityserve.cli)."""
