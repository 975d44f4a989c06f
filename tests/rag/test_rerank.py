"""Re-rankers: the shared contract, feature values, LambdaMART training and persistence, calibration."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlsys.common.errors import (
    CorruptFileError,
    EmbeddingSpaceMismatchError,
    InvalidInputError,
    NotFittedError,
)
from mlsys.rag import BM25Config, BM25Index, DocumentStore, HashingEmbedder, Hit
from mlsys.rag.rerank import (
    COVERAGE_FEATURES,
    CalibratedReranker,
    Calibrator,
    LearnedReranker,
    LearnedRerankerConfig,
    LexicalReranker,
    RerankFeatures,
    choose_top_n,
    coverage_at_precision,
    expected_calibration_error,
    labels_from_qrels,
    risk_coverage_curve,
    segments_of,
    term_coverage,
)

SMALL = LearnedRerankerConfig(
    num_leaves=(3, 7), min_data_in_leaf=(5,), max_rounds=60, early_stopping_rounds=10
)


def synthetic_corpus(n_topics: int = 12, seed: int = 0) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """Per topic: a relevant passage whose one sentence states the query's four words together, and a
    distractor that repeats the same four words scattered over sentences about other things (higher
    term frequency: BM25 prefers it). Returns the documents and ``(query, relevant, distractor)``."""
    rng = np.random.default_rng(seed)
    docs: dict[str, str] = {}
    triples = []
    filler = [f"filler{i}" for i in range(60)]
    for t in range(n_topics):
        words = [f"t{t}w{i}" for i in range(4)]
        query = " ".join(words)

        def sent(k: int) -> str:
            return " ".join(rng.choice(filler, size=k).tolist()).capitalize() + "."

        rel = f"{sent(6)} {' '.join(words).capitalize()} together here. {sent(7)} {sent(6)}"
        dis = " ".join(f"{w.capitalize()} {w} {sent(5)[:-1]} {w}." for w in words)
        docs[f"rel{t}"] = f"Title {t}. {rel}"
        docs[f"dis{t}"] = f"Other {t}. {dis}"
        triples.append((query, f"rel{t}", f"dis{t}"))
    return docs, triples


@pytest.fixture(scope="module")
def world() -> tuple[DocumentStore, RerankFeatures, list[tuple[str, str, str]]]:
    docs, triples = synthetic_corpus(40)
    store = DocumentStore(HashingEmbedder(dim=256))
    store.upsert([(d, t, {"title": t.split(".")[0] + "."}) for d, t in docs.items()])
    return store, RerankFeatures(store, HashingEmbedder(dim=256, seed=7)), triples


@pytest.fixture(scope="module")
def trained(world: tuple) -> LearnedReranker:
    store, feats, triples = world
    train = triples[:30]
    cands = [r.hits for r in store.hybrid_retriever().retrieve([q for q, _, _ in train], k=10)]
    labels = labels_from_qrels(cands, [{rel: 1} for _, rel, _ in train])
    return LearnedReranker(feats, SMALL).fit([q for q, _, _ in train], cands, labels)


def _hits(texts: list[str]) -> list[Hit]:
    return [Hit(i + 1, i + 1, 1.0 / (i + 1), f"d{i}", 0, t, 0, len(t)) for i, t in enumerate(texts)]


# ---------------------------------------------------------------------------------- contract
def _rerankers(trained: LearnedReranker) -> list:
    cal = Calibrator("platt").fit([0, 1, 0, 1], [0.0, 1.0, 0.1, 0.8])
    return [LexicalReranker(), trained, CalibratedReranker(LexicalReranker(), cal)]


def test_every_reranker_returns_a_ranked_permutation(world: tuple, trained: LearnedReranker) -> None:
    store, _, triples = world
    q = triples[35][0]
    hits = list(store.hybrid_retriever().retrieve([q], k=8)[0].hits)
    for rr in _rerankers(trained):
        out = rr.rerank(q, hits)
        assert sorted(h.id for h in out) == sorted(h.id for h in hits)
        assert [h.rank for h in out] == list(range(1, len(hits) + 1))
        scores = [h.score for h in out]
        assert scores == sorted(scores, reverse=True)
        assert all(rr.name in h.provenance and h.provenance[rr.name][0] == h.rank for h in out)
        assert all("dense" in h.provenance or "bm25" in h.provenance for h in out)  # retrievers' view kept
        assert [h.id for h in rr.rerank(q, hits, top_k=3)] == [h.id for h in out[:3]]
        assert rr.rerank(q, []) == []
        batch = rr.rerank_batch([q, triples[36][0]], [hits, []])
        assert [h.id for h in batch[0]] == [h.id for h in out] and batch[1] == []


def test_top_n_scores_only_the_head_and_keeps_the_tail_in_order() -> None:
    hits = _hits(["x", "y", "red apples", "red", "apples pie"])
    out = LexicalReranker(top_n=3).rerank("red apples", hits)
    assert [h.id for h in out] == [3, 1, 2, 4, 5]
    assert out[3].score == out[4].score == float("-inf")


@pytest.mark.parametrize(
    ("candidates", "match"),
    [
        ([Hit(1, 1, 0.0, text="a"), Hit(1, 2, 0.0, text="b")], "appears twice"),
        ([Hit(1, 1, 0.0)], "no text"),
        (["plain text"], "expected a mlsys.rag.Hit"),
        ("text", "sequence of Hit"),
    ],
)
def test_bad_candidates_are_refused_typed(candidates: object, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        LexicalReranker().rerank("query", candidates)  # type: ignore[arg-type]


def test_bad_batches_are_refused_typed() -> None:
    with pytest.raises(InvalidInputError, match="one list per query"):
        LexicalReranker().rerank_batch(["a", "b"], [_hits(["a"])])
    with pytest.raises(InvalidInputError, match="empty"):
        LexicalReranker().rerank("  ", _hits(["a"]))


def test_choose_top_n_picks_the_largest_cut_inside_the_budget() -> None:
    class Clocked(LexicalReranker):
        now = 0.0

        def _score_batch(self, queries, candidates):  # type: ignore[no-untyped-def]
            Clocked.now += 0.001 * len(candidates[0])  # 1 ms per candidate scored
            return super()._score_batch(queries, candidates)

    rr = Clocked(top_n=7)
    hits = _hits([f"w{i}" for i in range(100)])
    choice = choose_top_n(
        rr, ["w1"] * 5, [hits] * 5, budget_ms=55.0, grid=(10, 50, 100), clock=lambda: Clocked.now
    )
    assert choice.latency_ms == pytest.approx({10: 10.0, 50: 50.0, 100: 100.0})
    assert (choice.top_n, choice.fits, rr.top_n) == (50, True, 7)
    none = choose_top_n(rr, ["w1"], [hits], budget_ms=1.0, grid=(10, 50), clock=lambda: Clocked.now)
    assert (none.top_n, none.fits) == (10, False)


# ---------------------------------------------------------------------------------- features
def test_feature_values_match_independent_computations(world: tuple) -> None:
    store, feats, triples = world
    q = triples[3][0]
    hits = list(store.hybrid_retriever().retrieve([q], k=6)[0].hits)
    x = feats.matrix(q, hits)
    col = {n: i for i, n in enumerate(feats.names)}
    qv = store.embedder.embed_queries([q])[0]
    for i, h in enumerate(hits):
        assert x[i, col["dense_cos"]] == pytest.approx(
            float(store.embedder.embed_documents([h.text])[0] @ qv), abs=1e-5
        )
        ids, sc = store.bm25.search([q], k=store.n_chunks)
        bm = dict(zip(ids[0].tolist(), sc[0].tolist())).get(h.id, 0.0)
        assert x[i, col["bm25_full"]] == pytest.approx(bm, rel=1e-5)
        _title, sents = segments_of(h.text, store.document(h.doc_id).metadata["title"])
        sv = feats.sentence_embedder.embed_documents(sents)
        sq = feats.sentence_embedder.embed_queries([q])[0]
        assert x[i, col["sent_max"]] == pytest.approx(float((sv @ sq).max()), abs=1e-5)
        assert x[i, col["sent_mean"]] == pytest.approx(float((sv @ sq).mean()), abs=1e-5)
        assert x[i, col["n_sentences"]] == len(sents)
        assert x[i, col["fused_rank"]] == h.rank
        for r in ("dense", "bm25"):
            assert x[i, col[f"{r}_found"]] == (r in h.provenance)
        terms = store.bm25.analyzer.terms(q)
        cov = term_coverage(terms, store.bm25.idf(terms), set(store.bm25.analyzer.terms(h.text)))
        assert x[i, [col[c] for c in COVERAGE_FEATURES]].tolist() == pytest.approx(cov)
    assert x[:, col["sent_max_gap"]].max() == 0.0


@pytest.mark.parametrize("method", ["lucene", "robertson", "atire"])
def test_bm25_idf_is_the_weight_the_index_scores_with(method: str) -> None:
    bm = BM25Index(BM25Config(method=method))
    texts = ["cats purr", "dogs bark", "cats and dogs", "birds sing", "cats sleep"]
    bm.add(range(len(texts)), texts)
    n = len(texts)
    for term, df in (("cat", 3), ("dog", 2), ("purr", 1), ("zebra", 0)):
        want = {
            "lucene": np.log1p((n - df + 0.5) / (df + 0.5)),
            "robertson": max(np.log((n - df + 0.5) / (df + 0.5)), 0.0),
            "atire": np.log(n / max(df, 1)),
        }[method]
        assert bm.idf([term])[0] == pytest.approx(want)
    # a one-term query's BM25 score is idf x the tf part: same idf ranking as the scores
    bm.remove([1])  # the index follows removals (df of "dog" drops to 1)
    assert bm.idf(["dog"])[0] == pytest.approx(bm.idf(["purr"])[0])
    assert bm.idf([]).shape == (0,)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.sampled_from("abcdefgh"), min_size=1, max_size=8),
    st.sets(st.sampled_from("abcdefghij")),
    st.lists(st.floats(0.01, 10.0), min_size=8, max_size=8),
)
def test_term_coverage_bounds_and_monotonicity(query: list[str], passage: set[str], w: list[float]) -> None:
    weights = dict(zip("abcdefgh", w))
    idf = np.array([weights[t] for t in query])
    cov = term_coverage(query, idf, passage)
    assert 0.0 <= cov[0] <= 1.0 + 1e-12 and cov[1] in (0.0, 1.0) and 0.0 <= cov[2] <= 1.0
    missing = [weights[t] for t in query if t not in passage]
    assert cov[3] == (max(missing) if missing else 0.0)
    assert term_coverage(query, idf, set(query)) == (1.0, 1.0, 1.0, 0.0)
    assert term_coverage(query, idf, set()) == (0.0, 0.0, 0.0, max(weights[t] for t in query))
    # a passage that holds one more query term covers at least as much (duplicates count once)
    for t in set(query) - passage:
        more = term_coverage(query + query, np.r_[idf, idf], passage | {t})
        assert all(a >= b - 1e-12 for a, b in zip(more[:3], cov[:3])) and more[3] <= cov[3]
    with pytest.raises(InvalidInputError, match="idf"):
        term_coverage(query, idf[:-1], passage)
    assert all(np.isnan(v) for v in term_coverage([], np.zeros(0), passage))


def test_segments_split_the_title_and_strip_sentences() -> None:
    assert segments_of("Aspirin. It thins blood.  It helps. ", "Aspirin.") == (
        "Aspirin.",
        ["It thins blood.", "It helps."],
    )
    assert segments_of("No title here. Two.", "Other") == (None, ["No title here.", "Two."])
    with pytest.raises(InvalidInputError):
        segments_of(None, "t")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- learning
def test_confidently_irrelevant_distractor_is_ranked_below_the_relevant_passage(
    world: tuple, trained: LearnedReranker
) -> None:
    """Held-out topics: BM25 puts the lexical distractor first; the learned re-ranker does not."""
    store, _, triples = world
    bm25_wrong = learned_right = 0
    for q, rel, dis in triples[30:]:
        hits = list(store.hybrid_retriever().retrieve([q], k=10)[0].hits)
        pos = {h.doc_id: h.provenance.get("bm25", (99, 0))[0] for h in hits}
        bm25_wrong += pos[dis] < pos[rel]
        order = [h.doc_id for h in trained.rerank(q, hits)]
        learned_right += order.index(rel) < order.index(dis) and order[0] == rel
    assert bm25_wrong >= 8  # the distractor really is lexically stronger
    assert learned_right >= 9  # of 10 held-out topics


def test_training_selects_on_validation_and_is_deterministic(world: tuple, trained: LearnedReranker) -> None:
    v = trained.validation_
    assert len(v["grid"]) == 2 and v["chosen_ndcg@10"] == max(g["ndcg@10"] for g in v["grid"])
    assert v["n_fit_queries"] + v["n_validation_queries"] == v["n_training_queries"] == 30
    store, feats, triples = world
    train = triples[:30]
    cands = [r.hits for r in store.hybrid_retriever().retrieve([q for q, _, _ in train], k=10)]
    labels = labels_from_qrels(cands, [{rel: 1} for _, rel, _ in train])
    again = LearnedReranker(feats, SMALL).fit([q for q, _, _ in train], cands, labels)
    x = feats.matrix(train[0][0], cands[0])
    np.testing.assert_array_equal(again.predict_matrix(x), trained.predict_matrix(x))


def test_save_load_round_trip_and_refusals(world: tuple, trained: LearnedReranker, tmp_path: Path) -> None:
    store, feats, triples = world
    trained.save(tmp_path / "m")
    back = LearnedReranker.load(tmp_path / "m", feats)
    hits = list(store.hybrid_retriever().retrieve([triples[33][0]], k=10)[0].hits)
    x = feats.matrix(triples[33][0], hits)
    np.testing.assert_array_equal(back.predict_matrix(x), trained.predict_matrix(x))
    assert back.params_ == trained.params_
    assert "pickle" not in (tmp_path / "m" / "model.txt").read_text()[:200]
    other_sentences = RerankFeatures(store, HashingEmbedder(dim=256, seed=8))
    with pytest.raises(EmbeddingSpaceMismatchError, match="sentence embedder"):
        LearnedReranker.load(tmp_path / "m", other_sentences)
    other_store = DocumentStore(HashingEmbedder(dim=128))
    with pytest.raises(EmbeddingSpaceMismatchError, match="store"):
        LearnedReranker.load(tmp_path / "m", RerankFeatures(other_store, feats.sentence_embedder))
    with pytest.raises(InvalidInputError, match="differ"):
        LearnedReranker.load(
            tmp_path / "m", RerankFeatures(store, feats.sentence_embedder, retrievers=("bm25",))
        )
    shutil.copytree(tmp_path / "m", tmp_path / "t")
    with (tmp_path / "t" / "model.txt").open("a") as f:
        f.write("\n")
    with pytest.raises(CorruptFileError, match="sha256"):
        LearnedReranker.load(tmp_path / "t", feats)
    man = json.loads((tmp_path / "m" / "manifest.json").read_text())
    man["class"] = "BM25Index"
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(CorruptFileError, match="expected 'LearnedReranker'"):
        LearnedReranker.load(tmp_path / "m", feats)


def test_untrained_and_undertrained_are_refused(world: tuple) -> None:
    _, feats, _ = world
    with pytest.raises(NotFittedError):
        LearnedReranker(feats).rerank("q", _hits(["a"]))
    x = [np.zeros((3, len(feats.names)), np.float32)] * 3
    with pytest.raises(InvalidInputError, match="too few queries"):
        LearnedReranker(feats, SMALL).fit_matrices(x, [np.array([1, 0, 0])] * 3)
    with pytest.raises(InvalidInputError, match="expected"):
        LearnedReranker(feats, SMALL).fit_matrices([np.zeros((3, 2))], [np.zeros(3)])
    with pytest.raises(InvalidInputError):
        LearnedRerankerConfig(num_leaves=())


# ---------------------------------------------------------------------------------- calibration
def test_calibration_lowers_ece_of_miscalibrated_scores(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    true_p = rng.uniform(0.02, 0.98, 4000)
    y = (rng.uniform(0, 1, 4000) < true_p).astype(float)
    raw = 0.4 * np.log(true_p / (1 - true_p)) + 1.5  # monotone in the truth, far from a probability
    squashed = 1 / (1 + np.exp(-raw))
    fit, ev = slice(0, 2000), slice(2000, None)
    for method in ("platt", "isotonic"):
        cal = Calibrator(method).fit(y[fit], raw[fit])
        assert (
            expected_calibration_error(y[ev], cal.transform(raw[ev]))
            < 0.05
            < 0.1
            < expected_calibration_error(y[ev], squashed[ev])
        )
        assert np.all(np.diff(cal.transform(np.sort(raw))) >= -1e-12)  # monotone
        cal.save(tmp_path / f"{method}.json")
        np.testing.assert_array_equal(
            Calibrator.load(tmp_path / f"{method}.json").transform(raw), cal.transform(raw)
        )
    (tmp_path / "bad.json").write_text('{"method": "isotonic", "params": {"x": [2, 1], "y": [0, 1]}}')
    with pytest.raises(CorruptFileError):
        Calibrator.load(tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="both"):
        Calibrator().fit([1, 1], [0.1, 0.2])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 20)), min_size=1, max_size=40),
    st.sampled_from([0.5, 0.8, 0.9]),
)
def test_coverage_at_precision_equals_brute_force(pairs: list[tuple[bool, int]], precision: float) -> None:
    y = np.array([float(a) for a, _ in pairs])
    c = np.array([b / 20 for _, b in pairs])
    best = 0.0
    for t in np.unique(c):
        answered = c >= t
        if y[answered].mean() >= precision - 1e-12:
            best = max(best, answered.mean())
    cov, _ = coverage_at_precision(y, c, precision)
    assert cov == pytest.approx(best)
    rc = risk_coverage_curve(y, c)
    assert rc.coverage[-1] == 1.0 and rc.risk[-1] == pytest.approx(1 - y.mean())


def test_ece_matches_a_direct_computation() -> None:
    rng = np.random.default_rng(1)
    p, y = rng.uniform(0, 1, 500), rng.integers(0, 2, 500).astype(float)
    bins = np.minimum((p * 10).astype(int), 9)
    direct = sum(
        abs(y[bins == b].mean() - p[bins == b].mean()) * (bins == b).mean()
        for b in range(10)
        if (bins == b).any()
    )
    assert expected_calibration_error(y, p, n_bins=10) == pytest.approx(direct)
    with pytest.raises(InvalidInputError):
        expected_calibration_error([1, 0], [0.5, 1.5])
