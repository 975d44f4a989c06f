"""Every public name of mlsys has a docstring (the check ``nox -s docs`` runs, as a test).

Reads the docstrings with griffe, as the documentation site renders them; see
``docs/_scripts/check_docstrings.py`` for what counts as public.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]

pytest.importorskip(
    "griffe", reason="griffe is not installed: pip install -c constraints.txt -r requirements/docs.txt"
)


def _checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "check_docstrings", REPO / "docs" / "_scripts" / "check_docstrings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_public_name_has_a_docstring() -> None:
    missing = _checker().missing_docstrings()
    assert missing == [], f"{len(missing)} public names without a docstring:\n" + "\n".join(missing)


def test_the_check_walks_every_package_and_catches_a_missing_docstring(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checker = _checker()
    modules = checker.public_modules()
    for name in ("mlsys.common.ann", "mlsys.recsys.cascade", "mlsys.rag.rerank", "mlsys.vision"):
        assert name in modules
    assert not any(part.startswith("_") for m in modules for part in m.split("."))
    # a copy of mlsys.common with one public function stripped of its docstring must be reported
    import shutil

    src = tmp_path / "packages" / "common" / "src"
    shutil.copytree(REPO / "packages" / "common" / "src", src)
    path = src / "mlsys" / "common" / "ann" / "_registry.py"
    text = path.read_text(encoding="utf-8")
    head, rest = text.split("def make_index(", 1)
    signature, body = rest.split('"""', 1)
    _doc, after = body.split('"""', 1)
    path.write_text(
        head + "def make_index(" + signature + "pass\n" + after.split("\n", 1)[1], encoding="utf-8"
    )
    for dist in ("recsys", "rag", "vision"):
        shutil.copytree(REPO / "packages" / dist / "src", tmp_path / "packages" / dist / "src")
    monkeypatch.setattr(checker, "REPO", tmp_path)
    assert "mlsys.common.ann.make_index (function)" in checker.missing_docstrings()
