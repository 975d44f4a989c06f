"""A manifest that is JSON of the wrong kind, or nested past the recursion limit, is a corrupt file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlsys.common.ann import ExactIndex, load_index
from mlsys.common.errors import CorruptFileError
from mlsys.common.spaces import EmbeddingSpace


@pytest.mark.parametrize(
    "text",
    ["[" * 100_000, "{" * 50_000, "[1, 2]", '"a string"', "null", "\udcff"],
    ids=["deep-list", "deep-object", "list", "string", "null", "not-utf8"],
)
def test_load_refuses_garbage_manifest(tmp_path: Path, text: str) -> None:
    space = EmbeddingSpace(name="t", version="1", dim=4, metric="cosine")
    index = ExactIndex(space)
    index.add(np.arange(3), np.eye(3, 4, dtype=np.float32) + 0.1)
    index.save(tmp_path / "idx")
    (tmp_path / "idx" / "manifest.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(CorruptFileError):
        load_index(tmp_path / "idx")
    with pytest.raises(CorruptFileError):
        ExactIndex.load(tmp_path / "idx")
