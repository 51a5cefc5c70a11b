"""The one exception family. The CLI turns these into one red line and exit code 1."""


class FinsightError(Exception):
    """An expected failure: bad input, bad config, a refused artifact. Never a bug."""


class ConfigError(FinsightError):
    """A config key, value, file or override is wrong."""


class DataError(FinsightError):
    """An input file or its contents cannot be used."""


class OutputError(FinsightError):
    """An output path cannot be written: read-only, not a directory, disk full."""


class ModelError(FinsightError):
    """A model cannot be found, loaded or does not fit the task."""


class ExportValidationError(FinsightError):
    """An exported artifact failed its validation gate."""

    def __init__(self, message: str, report: dict | None = None):
        super().__init__(message)
        self.report = report or {}


class BackendError(FinsightError):
    """A prediction backend is unavailable or failed."""


class RegistryError(FinsightError):
    """MLflow tracking or the model registry failed."""


class FinsightWarning(UserWarning):
    """Something the user chose to skip or should know, raised with :func:`warnings.warn`: the
    library never prints; the CLI shows these as yellow lines on stderr."""
