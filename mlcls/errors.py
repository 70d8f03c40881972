"""Error types shared by the library and the command-line tools.

Every error a user can cause with bad input derives from :class:`MlclsError`; the tools catch it,
print its message on one line and exit with status 2 (3 for :class:`WriteError`), so no stack
trace hides the cause.
"""


class MlclsError(Exception):
    """Base class for user-facing errors (bad config, bad data, bad checkpoint)."""


class ConfigError(MlclsError, ValueError):
    """A config file or override is malformed or names something that does not exist."""


class BuildError(MlclsError, ValueError):
    """A component could not be built from its ``{type: Name, ...}`` description."""


class DataError(MlclsError, ValueError):
    """An annotation file or image is missing or malformed."""


class CheckpointError(MlclsError, ValueError):
    """A checkpoint file is missing, truncated or not an mlcls checkpoint."""


class TrainingError(MlclsError, RuntimeError):
    """Training cannot continue (e.g. the loss became non-finite)."""


class WriteError(MlclsError, OSError):
    """An output could not be written (disk full, read-only folder); earlier files are intact.

    The tools exit with status 3 for it (2 is bad input), so scripts can tell the two apart.
    """

    exit_code = 3
