"""Where the shared data sets live, and where derived artefacts are cached.

Data sets are never shipped with mlsys (their licences forbid redistribution). They are found
under ``$MLSYS_DATA`` or, when it is unset, under ``shared/data`` next to the repository checkout
(``<repo>/../shared/data``), looked up from the current directory upwards. Caches (embeddings,
trained checkpoints, encoded benchmark vectors) go under :func:`cache_root`, never next to the data.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlsys.common.errors import DatasetNotFoundError, InvalidInputError

__all__ = ["cache_root", "data_root", "find_dataset"]

ENV_VAR = "MLSYS_DATA"
CACHE_ENV_VAR = "MLSYS_CACHE_DIR"


def cache_root() -> Path:
    """``$MLSYS_CACHE_DIR`` if set, else ``~/.cache/mlsys``: the one root of every mlsys cache.

    Example:
        >>> cache_root().name == "mlsys" or "MLSYS_CACHE_DIR" in __import__("os").environ
        True
    """
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mlsys"


def data_root(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the data root: ``$MLSYS_DATA`` if set, else the first ``../shared/data`` found upwards.

    Args:
        start: where to start looking upwards (default: the current directory).

    Example:
        >>> import os
        >>> os.environ["MLSYS_DATA"] = "/tmp/mydata"
        >>> str(data_root())
        '/tmp/mydata'
        >>> del os.environ["MLSYS_DATA"]
    """
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        candidate = d.parent / "shared" / "data"
        if (d / "packages").is_dir() and candidate.is_dir():
            return candidate
        if (d / "shared" / "data").is_dir():
            return d / "shared" / "data"
    # Nothing found: report the conventional location relative to the start directory.
    return here.parent / "shared" / "data"


def find_dataset(name: str, *, root: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder of data set ``name`` or raise :class:`DatasetNotFoundError` with the path tried.

    Example:
        >>> find_dataset("no-such-set", root="/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.DatasetNotFoundError: data set 'no-such-set' not found at /nonexistent/no-such-set ...
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidInputError(f"data set name must be a non-empty str, got {name!r}")
    if root is not None and not isinstance(root, (str, os.PathLike)):
        raise InvalidInputError(f"root must be a path, got {type(root).__name__}")
    base = Path(root) if root is not None else data_root()
    path = base / name
    try:
        found = path.is_dir()
    except (OSError, ValueError):  # a NUL byte, a name too long for the file system
        found = False
    if not found:
        raise DatasetNotFoundError(
            f"data set {name!r} not found at {path} (set ${ENV_VAR} to the folder that holds it)"
        )
    return path
