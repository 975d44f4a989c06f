"""Cross-encoder and bi-encoder re-rankers and their fine-tuning plumbing on a tiny randomly
initialised BERT (no weights); RerankChain."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")
pytest.importorskip("transformers")

from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, InvalidInputError
from mlsys.rag import DocumentStore, HashingEmbedder, Hit, MiniLMEmbedder
from mlsys.rag.answer import AnswerPipeline
from mlsys.rag.rerank import (
    CrossEncoderReranker,
    EmbedderReranker,
    LexicalReranker,
    RerankChain,
    check_cross_encoder_dir,
    fine_tune_bi_encoder,
    fine_tune_cross_encoder,
    mine_hard_negatives,
)

WORDS = (
    "the a of and to in is was for on with as by at from model training employee models aspirin blood "
    "thins heart risk study patients cells protein gene cancer mice dose effect increase decrease "
    "red blue sky apples cars solar wind power plant policy refund days"
).split()


def make_tiny_cross_encoder(
    path: Path, *, seed: int = 0, architecture: str = "BertForSequenceClassification"
) -> Path:
    """Write a 2-layer, 32-wide BERT with a 1-logit head and a word-level vocabulary to ``path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = [
        "[PAD]",
        "[UNK]",
        "[CLS]",
        "[SEP]",
        "[MASK]",
        *WORDS,
        *"abcdefghijklmnopqrstuvwxyz0123456789.,?!",
    ]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n", encoding="utf-8")
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(dict.fromkeys(vocab)),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    model = (
        BertForSequenceClassification(cfg)
        if architecture == "BertForSequenceClassification"
        else BertModel(cfg)
    )
    model.save_pretrained(str(path), safe_serialization=True)
    # the vocabulary as a dict: transformers 5 no longer reads ``vocab_file`` here (every word was [UNK])
    words = {w: i for i, w in enumerate(dict.fromkeys(vocab))}
    BertTokenizerFast(vocab=words, do_lower_case=True).save_pretrained(str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_cross_encoder(tmp_path_factory.mktemp("tiny") / "ce")


@pytest.fixture(scope="module")
def reranker(tiny: Path) -> CrossEncoderReranker:
    return CrossEncoderReranker(tiny, max_length=32, batch_size=4)


def _hits(texts: list[str]) -> list[Hit]:
    return [Hit(i, i + 1, 0.0, f"d{i}", 0, t, 0, len(t)) for i, t in enumerate(texts)]


def test_scores_are_the_models_logits_in_any_batching(reranker: CrossEncoderReranker) -> None:
    texts = ["aspirin thins blood", "red apples", "solar power plant", "the heart risk study"]
    s = reranker.score("aspirin blood", _hits(texts))
    assert s.shape == (4,) and s.dtype == np.float32 and np.isfinite(s).all()
    one_by_one = np.array([reranker.score_pairs(["aspirin blood"], [t])[0] for t in texts])
    np.testing.assert_allclose(s, one_by_one, rtol=1e-4, atol=1e-5)
    ranked = reranker.rerank("aspirin blood", _hits(texts))
    assert [h.score for h in ranked] == sorted(s.tolist(), reverse=True)
    assert ranked[0].provenance["cross-encoder"] == (1, ranked[0].score)


def test_pairs_longer_than_max_length_are_truncated_not_refused(reranker: CrossEncoderReranker) -> None:
    long = " ".join(["aspirin thins blood"] * 40)  # ~120 word pieces, max_length 32
    tail_changed = long + " " + " ".join(["solar wind power"] * 40)
    a, b = reranker.score_pairs(["aspirin", "aspirin"], [long, tail_changed])
    # everything past the 32-token cut is ignored: the two passages score the same
    assert a == pytest.approx(b, abs=1e-6)
    short = reranker.score_pairs(["aspirin"], ["aspirin thins blood"])[0]
    assert short != pytest.approx(a, abs=1e-6)


def test_bad_model_directories_are_refused_typed(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        CrossEncoderReranker(tmp_path / "missing")
    bi = make_tiny_cross_encoder(tmp_path / "bi", architecture="BertModel")
    with pytest.raises(CorruptFileError, match="not a cross-encoder"):
        CrossEncoderReranker(bi)
    for missing in ("model.safetensors", "config.json"):
        broken = tmp_path / f"no-{missing}"
        shutil.copytree(tiny, broken)
        (broken / missing).unlink()
        with pytest.raises(CorruptFileError, match=r"model\.safetensors|config\.json"):
            check_cross_encoder_dir(broken)
    no_tok = tmp_path / "no-tokenizer"
    shutil.copytree(tiny, no_tok)
    for f in ("vocab.txt", "tokenizer.json"):
        (no_tok / f).unlink(missing_ok=True)
    with pytest.raises(CorruptFileError, match="tokenizer"):
        check_cross_encoder_dir(no_tok)
    bad_json = tmp_path / "bad-json"
    shutil.copytree(tiny, bad_json)
    (bad_json / "config.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="unreadable"):
        check_cross_encoder_dir(bad_json)
    with pytest.raises(InvalidInputError):
        check_cross_encoder_dir(None)  # type: ignore[arg-type]


def test_empty_candidates_and_bad_input(reranker: CrossEncoderReranker) -> None:
    assert reranker.rerank("aspirin", []) == []
    with pytest.raises(InvalidInputError, match="aligned"):
        reranker.score_pairs(["a", "b"], ["x"])
    with pytest.raises(InvalidInputError, match="no text"):
        reranker.rerank("aspirin", [Hit(1, 1, 0.0)])


def test_fine_tune_writes_a_loadable_cross_encoder_and_respects_its_budget(
    tiny: Path, tmp_path: Path
) -> None:
    store = DocumentStore(HashingEmbedder(dim=64))
    store.upsert(
        {"a": "aspirin thins blood", "b": "aspirin heart risk", "c": "red apples", "d": "solar wind power"}
    )
    pairs = mine_hard_negatives(
        store.bm25_retriever(), {"q": "aspirin blood"}, {"q": {"a": 1}}, n_negatives=2
    )
    assert pairs[0] == ("aspirin blood", "aspirin thins blood", 1.0)
    assert all(label == 0.0 for _, _, label in pairs[1:]) and len(pairs) == 2  # only b shares a term
    rep = fine_tune_cross_encoder(tiny, pairs * 4, tmp_path / "ft", epochs=2, batch_size=4, max_length=32)
    assert rep.steps == 4 and rep.pairs_seen == 16 and not rep.stopped_by_budget
    assert np.isfinite(rep.mean_loss_last)
    ft = CrossEncoderReranker(rep.path, max_length=32)
    base = CrossEncoderReranker(tiny, max_length=32)
    assert ft.score("aspirin blood", _hits(["aspirin thins blood"]))[0] != pytest.approx(
        base.score("aspirin blood", _hits(["aspirin thins blood"]))[0], abs=1e-7
    )
    assert json.loads((rep.path / "config.json").read_text())["architectures"] == [
        "BertForSequenceClassification"
    ]
    short = fine_tune_cross_encoder(
        tiny, pairs * 4, tmp_path / "ft2", epochs=5, batch_size=2, time_budget_s=1e-9
    )
    assert short.steps == 1 and short.stopped_by_budget
    with pytest.raises(InvalidInputError, match="pairs"):
        fine_tune_cross_encoder(tiny, [("q", "p", 2.0)], tmp_path / "x")
    with pytest.raises(InvalidInputError, match="no training pairs"):
        fine_tune_cross_encoder(tiny, [], tmp_path / "x")


# ---------------------------------------------------------------------------------- bi-encoder
def make_tiny_bi_encoder(path: Path) -> Path:
    """A sentence-transformers folder: the tiny BERT, mean pooling, L2 normalisation."""
    from sentence_transformers import SentenceTransformer, models

    bert = make_tiny_cross_encoder(path.parent / (path.name + "-bert"), architecture="BertModel")
    word = models.Transformer(str(bert), max_seq_length=32)
    model = SentenceTransformer(
        modules=[word, models.Pooling(32, "mean"), models.Normalize()],
        device="cpu",
    )
    model.save(str(path))
    return path


@pytest.fixture(scope="module")
def tiny_bi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bi_encoder(tmp_path_factory.mktemp("tinybi") / "bi")


PAIRS = [
    ("aspirin blood", "aspirin thins blood", 1.0),
    ("aspirin blood", "aspirin heart risk", 0.0),
    ("aspirin blood", "red apples", 0.0),
    ("solar power", "solar wind power plant", 1.0),
    ("solar power", "solar policy refund days", 0.0),
    ("red apples", "red apples", 1.0),
    ("red apples", "red cars", 0.0),
]


def _model(path: Path) -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(path), device="cpu")


def test_fine_tuning_learns_its_pairs_and_writes_a_loadable_embedding_space(
    tiny_bi: Path, tmp_path: Path
) -> None:
    import torch

    def margin(path: Path) -> float:
        m = _model(path)
        with torch.no_grad():
            q = m.encode(["aspirin blood", "solar power", "red apples"], normalize_embeddings=True)
            pos = m.encode(
                ["aspirin thins blood", "solar wind power plant", "red apples"], normalize_embeddings=True
            )
            neg = m.encode(
                ["aspirin heart risk", "solar policy refund days", "red cars"], normalize_embeddings=True
            )
        return float(np.mean((q * pos).sum(1) - (q * neg).sum(1)))

    rep = fine_tune_bi_encoder(tiny_bi, PAIRS, tmp_path / "ft", epochs=30, batch_size=3, learning_rate=1e-3,
                               max_length=32)  # fmt: skip
    assert rep.steps == 30 and rep.pairs_seen == 90 and rep.epochs_completed == 30.0
    assert not rep.stopped_by_budget and np.isfinite(rep.mean_loss_last)
    # positives move above their hard negatives
    assert margin(rep.path) > margin(tiny_bi) + 0.05
    # the folder is a new embedding space for the library's embedder (its version hashes the weights)
    assert MiniLMEmbedder(tiny_bi).space.version != MiniLMEmbedder(rep.path).space.version
    short = fine_tune_bi_encoder(tiny_bi, PAIRS, tmp_path / "ft2", epochs=5, batch_size=2, time_budget_s=1e-9)
    assert short.steps == 1 and short.stopped_by_budget
    # a second stage continues from the first one's folder, with more hard negatives per example
    # (capped by what each query has: 2, 1 and 1 here)
    more = fine_tune_bi_encoder(rep.path, PAIRS, tmp_path / "ft3", epochs=10, batch_size=3, learning_rate=1e-3,
                                max_length=32, negatives_per_example=3, seed=1)  # fmt: skip
    assert more.steps == 10 and np.isfinite(more.mean_loss_last)
    assert margin(more.path) > margin(tiny_bi) + 0.05
    assert MiniLMEmbedder(more.path).space.version != MiniLMEmbedder(rep.path).space.version


def test_a_passage_relevant_to_the_query_is_never_its_negative() -> None:
    from mlsys.rag.rerank._biencoder import _not_negatives

    positives = {"a": ["pa", "pa2"], "b": ["pb"]}
    # batch: (a, pa), (b, pb), (a, pa2); hard negatives drawn: "pa" for b (relevant to a), "x" for a
    mask = _not_negatives(["a", "b", "a"], ["pa", "pb", "pa2", "pa", "x"], positives)
    expected = np.array(
        [
            [False, False, True, True, False],  # a: its other positive and b's drawn "pa" are masked
            [False, False, False, False, False],  # b: nothing else in the step is relevant to it
            [True, False, False, True, False],  # a (second example): "pa" twice
        ]
    )
    assert mask.dtype == bool and (mask == expected).all()
    assert _not_negatives([], [], positives).shape == (0, 0)


def test_fine_tuning_refuses_bad_input_typed(tiny_bi: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no relevant pairs"):
        fine_tune_bi_encoder(tiny_bi, [("q", "p", 0.0)], tmp_path / "x")
    with pytest.raises(InvalidInputError, match="pairs"):
        fine_tune_bi_encoder(tiny_bi, [("q", "p", 2.0)], tmp_path / "x")
    with pytest.raises(InvalidInputError, match="no training pairs"):
        fine_tune_bi_encoder(tiny_bi, [], tmp_path / "x")
    with pytest.raises(InvalidInputError, match="scale"):
        fine_tune_bi_encoder(tiny_bi, PAIRS, tmp_path / "x", scale=0)
    with pytest.raises(InvalidInputError, match="negatives_per_example"):
        fine_tune_bi_encoder(tiny_bi, PAIRS, tmp_path / "x", negatives_per_example=0)
    with pytest.raises(DatasetNotFoundError, match=r"config\.json"):
        fine_tune_bi_encoder(tmp_path, PAIRS, tmp_path / "x")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="bi-encoder"):
        fine_tune_bi_encoder(broken, PAIRS, tmp_path / "x")


class _TinyEmbedder:
    """The tiny bi-encoder behind the Embedder protocol (MiniLMEmbedder is 384-wide)."""

    def __init__(self, path: Path) -> None:
        from mlsys.common.spaces import EmbeddingSpace

        self.model = _model(path)
        self.space = EmbeddingSpace(
            name="tiny", version="1", dim=32, metric="cosine", normalized=True, pooling="mean"
        )

    def embed_documents(self, texts: list[str], *, progress: bool | None = None) -> np.ndarray:
        return np.asarray(self.model.encode(list(texts), normalize_embeddings=True), dtype=np.float32)

    embed_queries = embed_documents


def test_embedder_reranker_scores_cosines_and_keeps_provenance_through_a_chain(tiny_bi: Path) -> None:
    emb = _TinyEmbedder(tiny_bi)
    rr = EmbedderReranker(emb, name="ft")
    texts = ["aspirin thins blood", "red apples", "solar wind power plant"]
    s = rr.score("aspirin blood", _hits(texts))
    want = emb.embed_documents(texts) @ emb.embed_queries(["aspirin blood"])[0]
    np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-6)
    chain = RerankChain([rr, LexicalReranker()])
    out = chain.rerank("aspirin blood", _hits(texts), top_k=2)
    assert [h.text for h in out] == ["aspirin thins blood", "red apples"] and chain.name == "lexical"
    by_text = {t: v for t, v in zip(texts, s.tolist())}
    for h in out:  # the bi-encoder's view survives the second stage
        assert h.provenance["ft"][1] == pytest.approx(by_text[h.text], rel=1e-5)
    assert chain.rerank("aspirin blood", []) == []
    store = DocumentStore(HashingEmbedder(dim=64))
    store.upsert({f"d{i}": t for i, t in enumerate(texts)})
    answer = AnswerPipeline(store.hybrid_retriever(), reranker=chain, k=3, top_k=1).answer("aspirin blood")
    assert not answer.abstained and answer.contexts[0].text == "aspirin thins blood"
    with pytest.raises(InvalidInputError, match="two or more"):
        RerankChain([rr])
    with pytest.raises(InvalidInputError, match="rerank_batch"):
        RerankChain([rr, "not a reranker"])
    with pytest.raises(InvalidInputError, match="Embedder"):
        EmbedderReranker("not an embedder")  # type: ignore[arg-type]
    # a hashing embedder needs no model: identical text ranks first
    assert (
        EmbedderReranker(HashingEmbedder(dim=64)).rerank("red apples", _hits(texts))[0].text == "red apples"
    )
