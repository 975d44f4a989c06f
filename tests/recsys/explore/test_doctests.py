"""Every docstring example in mlsys.recsys.explore runs."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import mlsys.recsys.explore as explore

MODULES = [
    "mlsys.recsys.explore",
    *(m.name for m in pkgutil.iter_modules(explore.__path__, "mlsys.recsys.explore.")),
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
