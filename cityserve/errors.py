"""The project's error types: each carries a one-line message meant for the person at the terminal.

The CLI turns a ``CityserveError`` into ``error: <message>`` and exit code 2 (bad input) instead of a
traceback; anything else is a bug and keeps its traceback.
"""

import sys


class CityserveError(Exception):
    """Base class: the message names the problem and the offending value or file."""

    exit_code = 2  # EXIT_BAD_INPUT


class LabelError(CityserveError, ValueError):
    """A label map holds a color, id or shape the label set / model does not accept."""


class CheckpointError(CityserveError):
    """A checkpoint or model card is missing, truncated, corrupt, or contradicts its card or flags."""


class ConfigError(CityserveError, ValueError):
    """Options that contradict each other or the model."""


class UnavailableError(CityserveError):
    """Something this machine lacks: TensorRT, a GPU, the tritonserver binary, a CPU feature."""

    exit_code = 3  # EXIT_UNAVAILABLE


# Exit codes of the `cityserve` CLI; they mean the same in every subcommand.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and its check failed (parity, a test render, a server error)
EXIT_BAD_INPUT = 2  # usage errors and bad input: a malformed PNG, unknown color, corrupt checkpoint
EXIT_UNAVAILABLE = 3  # a needed component is not installed or not supported on this machine
EXIT_INTERRUPTED = 130


def run_with_exit_codes(body) -> int:
    """Run an entry point's ``body()`` (returning its exit code) so that every entry point — the
    ``cityserve`` CLI and the ``train/`` scripts — answers errors the same way: ``error: <one line>``
    on stderr and the error class's ``exit_code``; Ctrl-C is 130. Other exceptions are bugs and keep
    their traceback."""
    try:
        return int(body() or 0)
    except CityserveError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
