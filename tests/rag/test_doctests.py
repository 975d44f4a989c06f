"""Every docstring example in mlsys.rag runs."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mlsys.rag",
    "mlsys.rag._bm25",
    "mlsys.rag._cache",
    "mlsys.rag._chunk",
    "mlsys.rag._chunkers",
    "mlsys.rag._embedders",
    "mlsys.rag._evaluation",
    "mlsys.rag._expansion",
    "mlsys.rag._retrievers",
    "mlsys.rag._store",
    "mlsys.rag.__main__",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
