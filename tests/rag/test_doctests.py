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
    "mlsys.rag.rerank",
    "mlsys.rag.rerank._protocol",
    "mlsys.rag.rerank._lexical",
    "mlsys.rag.rerank._features",
    "mlsys.rag.rerank._learned",
    "mlsys.rag.rerank._calibration",
    "mlsys.rag.rerank._calibrated",
    "mlsys.rag.rerank._gate",
    "mlsys.rag.rerank._cross",
    "mlsys.rag.answer",
    "mlsys.rag.answer._generators",
    "mlsys.rag.answer._pipeline",
    "mlsys.rag.judge",
    "mlsys.rag.judge._judges",
    "mlsys.rag.judge._review",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
