"""User-facing errors: the CLI prints their message as one paragraph and exits with code 2 (or the error's own
``exit_code``)."""

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest of ``choices``, or '' when none is close."""
    near = difflib.get_close_matches(str(name), list(choices), n=1)
    return f" (did you mean {near[0]!r}?)" if near else ""


class CnnbenchError(Exception):
    """A mistake in the user's input or environment that they can fix (not a bug in cnnbench)."""


class ConfigError(CnnbenchError):
    """An invalid option, hyperparameter or configuration file."""


class DataError(CnnbenchError):
    """A data set that is missing, malformed or unusable for the requested run."""


class TrainingError(CnnbenchError):
    """Training could not go on (diverged loss, out of memory, corrupt checkpoint)."""


class CorruptCheckpointError(TrainingError):
    """A checkpoint file that is truncated or unreadable: an older checkpoint may stand in for it."""


class UnsafeCheckpointError(TrainingError):
    """A checkpoint holding Python objects beyond tensors and plain data: never loaded, never skipped silently."""


class RunsFailedError(CnnbenchError):
    """Some runs of a study failed while the others finished: the command did not do all it was asked to."""

    exit_code = 1
