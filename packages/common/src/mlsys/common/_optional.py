"""Lazy import of optional backends with an error that names the package and the extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from mlsys.common.errors import MissingDependencyError


def import_optional(module: str, *, package: str | None = None, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` saying how to install it.

    Args:
        module: the importable module name (``"faiss"``).
        package: the PyPI distribution that provides it (``"faiss-cpu"``); defaults to ``module``.
        extra: the mlsys extra that installs it (``"mlsys-common[faiss]"``).

    Example:
        >>> np = import_optional("numpy")
        >>> np.__name__
        'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        hint = f"pip install {extra!r}" if extra else f"pip install {package or module}"
        raise MissingDependencyError(
            f"optional dependency {package or module!r} (module {module!r}) is not installed; "
            f"install it with: {hint}"
        ) from exc
