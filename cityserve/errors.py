"""The project's error types: each carries a one-line message meant for the person at the terminal.

The CLI turns a ``CityserveError`` into ``error: <message>`` and exit code 2 (bad input) instead of a
traceback; anything else is a bug and keeps its traceback.
"""


class CityserveError(Exception):
    """Base class: the message names the problem and the offending value or file."""


class LabelError(CityserveError, ValueError):
    """A label map holds a color, id or shape the label set / model does not accept."""


class CheckpointError(CityserveError):
    """A checkpoint or model card is missing, truncated, corrupt, or contradicts its card or flags."""


class ConfigError(CityserveError, ValueError):
    """Options that contradict each other or the model."""


class UnavailableError(CityserveError):
    """Something this machine lacks: TensorRT, a GPU, the tritonserver binary, a CPU feature."""


# Exit codes of the `cityserve` CLI; they mean the same in every subcommand.
EXIT_OK = 0
EXIT_FAILED = 1  # the command ran and its check failed (parity, a test render, a server error)
EXIT_BAD_INPUT = 2  # usage errors and bad input: a malformed PNG, unknown color, corrupt checkpoint
EXIT_UNAVAILABLE = 3  # a needed component is not installed or not supported on this machine
EXIT_INTERRUPTED = 130
