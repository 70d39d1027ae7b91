"""One module per CLI subcommand; each defines ``register(subparsers, groups)`` (see cityserve.cli).

``cityserve`` imports every command module to build its parser, so these modules import at the top
only what is light (errors, cards, label maps, the tensor contract, numpy, OpenCV) and take the
torch-, onnx- or gRPC-backed library inside the function that runs the command: ``cityserve --help``
and a usage error answer in a fraction of a second instead of the seconds torch takes to import.
"""
