"""The mlsys exception hierarchy.

Every error raised on purpose by mlsys derives from :class:`MlsysError` and also from the builtin
exception a caller would naturally catch (``ValueError``, ``KeyError``, ``ImportError``, ...), so
``except ValueError`` keeps working while ``except MlsysError`` catches everything of ours.

Messages say what was received and what was expected.

Example:
    >>> from mlsys.common.errors import DimensionMismatchError
    >>> try:
    ...     raise DimensionMismatchError("vectors have dim 3, expected 4")
    ... except ValueError as e:
    ...     print(e)
    vectors have dim 3, expected 4
"""

from __future__ import annotations

__all__ = [
    "CorruptFileError",
    "DatasetNotFoundError",
    "DeviceMismatchError",
    "DeviceUnavailableError",
    "DimensionMismatchError",
    "DuplicateIdError",
    "EmbeddingSpaceMismatchError",
    "EmptyIndexError",
    "FormatVersionError",
    "InvalidInputError",
    "LimitExceededError",
    "MissingDependencyError",
    "MlsysError",
    "NotFittedError",
    "ParseError",
    "ShardUnavailableError",
    "UnknownIdError",
    "UnknownNameError",
]


class MlsysError(Exception):
    """Base class of every error mlsys raises on purpose."""


class InvalidInputError(MlsysError, ValueError):
    """An argument has the wrong shape, dtype, range or content (NaN, empty, k <= 0, ...)."""


class LimitExceededError(InvalidInputError):
    """A size parameter or input is above a :mod:`mlsys.common.limits` limit (refused before allocating).

    ``limit`` is the name of the limit (``"max_k"``, ...), ``value`` what was asked, ``bound`` the
    limit in force; the message says how to raise it.
    """

    def __init__(self, message: str, *, limit: str = "", value: int = 0, bound: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value
        self.bound = bound


class DimensionMismatchError(InvalidInputError):
    """Vectors do not have the dimension the index, model or space expects."""


class EmbeddingSpaceMismatchError(InvalidInputError):
    """Vectors, a query or a file come from another embedding space than the one expected."""


class EmptyIndexError(InvalidInputError):
    """An operation needs at least one item (searching an empty index, fitting on no data)."""


class DuplicateIdError(InvalidInputError):
    """The same id appears twice where ids must be unique, or an id that already exists is added."""


class UnknownNameError(InvalidInputError):
    """A name (metric, backend, model, stage, ...) that is not registered; the message lists the valid ones."""


class UnknownIdError(MlsysError, KeyError):
    """An id that the index, store or model does not know."""

    def __str__(self) -> str:  # KeyError would wrap the message in quotes
        return str(self.args[0]) if self.args else ""


class CorruptFileError(MlsysError, ValueError):
    """A persisted file is truncated, fails its checksum, or is not what its manifest says."""


class FormatVersionError(CorruptFileError):
    """A persisted file was written by an incompatible format version."""


class ParseError(MlsysError, ValueError):
    """A data file is malformed; the message names the file and the line."""

    def __init__(self, message: str, *, path: object = None, line: int | None = None) -> None:
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.line = line


class MissingDependencyError(MlsysError, ImportError):
    """An optional backend is not installed; the message names the package and the extra."""


class ShardUnavailableError(MlsysError, RuntimeError):
    """A shard of a distributed index or job (a Ray actor) died, timed out or cannot be reached.

    Raised instead of returning a partial result; the message names the shard and how to recover
    (reload the index from its last save, rerun the job).
    """


class DatasetNotFoundError(MlsysError, FileNotFoundError):
    """A data set is not where it was looked for; the message names the path."""


class NotFittedError(MlsysError, RuntimeError):
    """A model or index is used before ``fit``/``build``."""


class DeviceUnavailableError(MlsysError, RuntimeError):
    """A compute device was asked for (``"cuda"``, ``"cuda:3"``, ``"mps"``) that this machine does not have.

    The message names what was asked and what was found (e.g. "CUDA is not available: torch 2.13.0+cpu
    was built without CUDA").
    """


class DeviceMismatchError(InvalidInputError):
    """A model and its inputs (or two inputs) live on different devices; the message names both."""
