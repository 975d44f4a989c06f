from __future__ import annotations

from pathlib import Path

import pytest

from mlsys.common.data import cache_root, data_root, find_dataset
from mlsys.common.errors import DatasetNotFoundError


def test_env_var_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "toy").mkdir()
    monkeypatch.setenv("MLSYS_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert find_dataset("toy") == tmp_path / "toy"


def test_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSYS_CACHE_DIR", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    monkeypatch.delenv("MLSYS_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_root() == tmp_path / ".cache" / "mlsys"


def test_missing_dataset_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=str(tmp_path / "nope")):
        find_dataset("nope", root=tmp_path)


def test_default_is_shared_data_beside_the_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLSYS_DATA", raising=False)
    repo = tmp_path / "work" / "main"
    (repo / "packages").mkdir(parents=True)
    (tmp_path / "work" / "shared" / "data").mkdir(parents=True)
    assert data_root(repo / "packages") == (tmp_path / "work" / "shared" / "data").resolve()


def test_fixture_skips_with_path(dataset) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(pytest.skip.Exception, match="not found at"):
        dataset("definitely-not-a-dataset")
