"""Relevance gate and answer pipeline: abstention when the relevant passage is gone, exact citations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlsys.common.errors import CorruptFileError, FormatVersionError, InvalidInputError, NotFittedError
from mlsys.rag import BM25Retriever, ChunkExpander, DocumentStore, HashingEmbedder, Hit, SentenceChunker
from mlsys.rag.answer import (
    Abstention,
    Answer,
    AnswerPipeline,
    ExtractiveGenerator,
    LLMGenerator,
    contexts_from_hits,
)
from mlsys.rag.rerank import (
    CalibratedReranker,
    Calibrator,
    EmbedderReranker,
    LexicalReranker,
    RelevanceGate,
    RerankChain,
)


def _world(n: int = 60) -> tuple[DocumentStore, list[tuple[str, str]]]:
    rng = np.random.default_rng(3)
    filler = [f"common{i}" for i in range(40)]
    docs, qs = {}, []
    for t in range(n):
        words = [f"k{t}x{i}" for i in range(3)]
        docs[f"d{t}"] = (
            f"{' '.join(rng.choice(filler, 5))}. The {' '.join(words)} fact holds. {' '.join(rng.choice(filler, 6))}."
        )
        qs.append((" ".join(words) + " " + " ".join(rng.choice(filler, 2)), f"d{t}"))
    store = DocumentStore(HashingEmbedder(dim=128))
    store.upsert(docs)
    return store, qs


@pytest.fixture(scope="module")
def gated() -> tuple[DocumentStore, list[tuple[str, str]], CalibratedReranker, RelevanceGate]:
    """A gate trained on answerable lists and on the same queries retrieved with their passage removed."""
    store, qs = _world()
    retr = store.hybrid_retriever()
    lex = LexicalReranker()
    train = qs[:45]
    raw = lex.rerank_batch(
        [q for q, _ in train], [r.hits for r in retr.retrieve([q for q, _ in train], k=10)]
    )
    ys = [float(h.doc_id == d) for (_, d), lst in zip(train, raw) for h in lst]
    rr = CalibratedReranker(lex, Calibrator("platt").fit(ys, [h.score for lst in raw for h in lst]))
    lists, labels = [], []
    for q, d in train:
        lists.append(rr.rerank(q, retr.retrieve([q], k=10)[0].hits))
        labels.append(1)
        lists.append(rr.rerank(q, retr.retrieve([q], k=10, deny=store.chunk_ids(d))[0].hits))
        labels.append(0)
    return store, qs, rr, RelevanceGate(retrievers=("dense", "bm25")).fit(lists, labels)


def test_query_whose_relevant_passage_was_removed_is_abstained_on(gated: tuple) -> None:
    store, qs, rr, gate = gated
    answered = abstained = 0
    for q, d in qs[45:]:
        pipe = AnswerPipeline(store.hybrid_retriever(), reranker=rr, gate=gate, k=10, top_k=2)
        out = pipe.answer(q)
        if isinstance(out, Answer) and out.citations[0].doc_id == d:
            answered += 1
        # the same question after its passage is deleted from the store
        store2 = DocumentStore(store.embedder)
        store2.upsert({k: store.document(k).text for k in store.doc_ids() if k != d})
        gone = AnswerPipeline(store2.hybrid_retriever(), reranker=rr, gate=gate, k=10).answer(q)
        abstained += isinstance(gone, Abstention) and gone.reason in ("low_relevance", "ambiguous")
    assert answered >= 13 and abstained >= 13  # of 15 held-out questions each


def test_gate_thresholds_persistence_and_refusals(gated: tuple, tmp_path: Path) -> None:
    store, qs, rr, gate = gated
    assert 0.0 <= gate.abstain_threshold_ <= gate.answer_threshold_ <= 1.0
    lst = rr.rerank(qs[50][0], store.hybrid_retriever().retrieve([qs[50][0]], k=10)[0].hits)
    x = gate.features(lst)
    assert x[0] == lst[0].score and x[1] == pytest.approx(lst[0].score - lst[1].score)
    gate.save(tmp_path / "g.json")
    back = RelevanceGate.load(tmp_path / "g.json")
    assert back.probability(lst) == gate.probability(lst) and back.decide(lst) == gate.decide(lst)
    assert gate.decide([]).decision == "abstain"
    (tmp_path / "bad.json").write_text(
        (tmp_path / "g.json").read_text().replace('"coef": [', '"coef": [1e999, ')
    )
    with pytest.raises(CorruptFileError):
        RelevanceGate.load(tmp_path / "bad.json")
    with pytest.raises(NotFittedError):
        RelevanceGate().decide(lst)
    with pytest.raises(InvalidInputError, match="answerable"):
        RelevanceGate().fit([lst] * 10, [1] * 10)


def _gate_lists(store: DocumentStore, qs: list, rr: CalibratedReranker) -> tuple[list, list, list]:
    """Per question: its list (answerable) and its list with its passage removed (not)."""
    retr = store.hybrid_retriever()
    lists, labels, queries = [], [], []
    for q, d in qs:
        lists += [rr.rerank(q, retr.retrieve([q], k=60)[0].hits),
                  rr.rerank(q, retr.retrieve([q], k=60, deny=store.chunk_ids(d))[0].hits)]  # fmt: skip
        labels += [1, 0]
        queries += [q, q]
    return lists, labels, queries


def test_lexical_gate_reads_the_rare_terms_and_round_trips(gated: tuple, tmp_path: Path) -> None:
    store, qs, rr, _ = gated
    lists, labels, queries = _gate_lists(store, qs[:45], rr)
    gate = RelevanceGate(retrievers=("dense", "bm25"), lexical=store.bm25).fit(lists, labels, queries)
    col = {n: i for i, n in enumerate(gate.names)}
    x = gate.feature_matrix(lists, queries)
    # the answerable list's top hit holds the question's rare words; with its passage gone, none does
    assert (x[0::2, col["top1_rare3_coverage"]] == 1.0).all()
    assert (x[1::2, col["best10_rare3_coverage"]] == 0.0).all()
    assert (x[1::2, col["best10_missing_idf_max"]] > x[0::2, col["top1_missing_idf_max"]]).all()
    # ... so the gate separates the held-out questions' lists perfectly
    held, held_y, held_q = _gate_lists(store, qs[45:], rr)
    p = np.array([gate.probability(h, q) for h, q in zip(held, held_q)])
    assert p[np.array(held_y) == 1].min() > p[np.array(held_y) == 0].max()
    # it needs the question, and a loaded copy needs the index again
    with pytest.raises(InvalidInputError, match="query"):
        gate.decide(held[0])
    with pytest.raises(InvalidInputError, match="one per list"):
        gate.feature_matrix(held, held_q[:-1])
    gate.save(tmp_path / "lex.json")
    with pytest.raises(InvalidInputError, match=r"lexical=store\.bm25"):
        RelevanceGate.load(tmp_path / "lex.json")
    back = RelevanceGate.load(tmp_path / "lex.json", lexical=store.bm25)
    assert [back.probability(h, q) for h, q in zip(held, held_q)] == p.tolist()
    pipe = AnswerPipeline(
        store.hybrid_retriever(), reranker=rr, gate=back, k=60, top_k=2
    )  # the trained depth
    assert isinstance(pipe.answer(held_q[0]), Answer)
    with pytest.raises(InvalidInputError, match="BM25Index"):
        RelevanceGate(lexical=store)  # type: ignore[arg-type]


def test_gap_below_the_top10_and_old_gate_files(gated: tuple, tmp_path: Path) -> None:
    gate = gated[3]
    prov = [{"bm25": (i + 1, 30.0 - i), "dense": (i + 1, float("nan"))} for i in range(30)]  # dense: no score
    lst = [Hit(i, i + 1, 1.0 / (i + 1), text="x", provenance=prov[i]) for i in range(30)]
    x = gate.features(lst)
    col = {n: i for i, n in enumerate(gate.names)}
    assert x[col["bm25_gap_below10"]] == pytest.approx(30.0 - np.mean(30.0 - np.arange(10, 30)))
    assert np.isnan(x[col["dense_gap_below10"]]) and np.isnan(
        gate.features(lst[:10])[col["bm25_gap_below10"]]
    )
    gate.save(tmp_path / "g.json")
    old = (tmp_path / "g.json").read_text().replace('"format_version": 2', '"format_version": 1')
    (tmp_path / "old.json").write_text(old)
    with pytest.raises(FormatVersionError):
        RelevanceGate.load(tmp_path / "old.json")


def test_a_view_the_gate_relies_on_must_be_there(gated: tuple, tmp_path: Path) -> None:
    store, qs, rr, _ = gated
    view = EmbedderReranker(HashingEmbedder(dim=64, seed=5), name="extra")
    chain = RerankChain([view, rr])
    lists, labels, _ = _gate_lists(store, qs[:45], chain)
    gate = RelevanceGate(retrievers=("dense", "bm25", "extra")).fit(lists, labels)
    assert "extra" in gate.required_ and "bm25" not in gate.required_  # BM25 leaves hits without its view
    plain = rr.rerank(qs[50][0], store.hybrid_retriever().retrieve([qs[50][0]], k=60)[0].hits)
    with pytest.raises(InvalidInputError, match="'extra'"):
        gate.decide(plain)
    chained = chain.rerank(qs[50][0], store.hybrid_retriever().retrieve([qs[50][0]], k=60)[0].hits)
    assert gate.decide(chained).decision in ("answer", "ambiguous", "abstain")
    gate.save(tmp_path / "g.json")
    back = RelevanceGate.load(tmp_path / "g.json")
    assert back.required_ == gate.required_ and back.probability(chained) == gate.probability(chained)
    with pytest.raises(InvalidInputError, match="'extra'"):
        back.probability(plain)
    # a view some training list lacked is optional; a refit learns the views anew
    some = [lst if i % 2 else [dataclasses.replace(h, provenance={"dense": (1, 0.5)}) for h in lst]
            for i, lst in enumerate(lists)]  # fmt: skip
    assert "extra" not in gate.fit(some, labels).required_ and 0.0 <= gate.probability(plain) <= 1.0
    (tmp_path / "bad.json").write_text((tmp_path / "g.json").read_text().replace('"extra"\n ]', '"nope"\n ]'))
    with pytest.raises(CorruptFileError):
        RelevanceGate.load(tmp_path / "bad.json")


def test_pipeline_abstains_typed_when_nothing_is_retrieved() -> None:
    bm = BM25Retriever()
    bm.add([1], ["solar panels"])
    out = AnswerPipeline(bm).answer("wind farms")
    assert isinstance(out, Abstention) and out.reason == "no_candidates" and out.abstained
    with pytest.raises(InvalidInputError, match="together"):
        AnswerPipeline(bm, expander=ChunkExpander())
    with pytest.raises(InvalidInputError):
        AnswerPipeline("not a retriever")  # type: ignore[arg-type]


_TEXT = st.lists(
    st.sampled_from([*list("abc xyz.!?\n"), "Dr. ", "e.g. ", "  ", "é", "…"]), min_size=1, max_size=120
).map("".join)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_TEXT, min_size=1, max_size=4), st.sampled_from(["abc", "xyz abc", "b"]), st.booleans())
def test_every_citation_is_an_exact_quote_of_its_document(
    texts: list[str], question: str, expand: bool
) -> None:
    texts = [t if t.strip() else "abc." for t in texts]
    store = DocumentStore(HashingEmbedder(dim=32), chunker=SentenceChunker(size=40))
    store.upsert({f"d{i}": t for i, t in enumerate(texts)})
    kw = {"expander": ChunkExpander(before=1, after=1), "source": store} if expand else {}
    gen = ExtractiveGenerator(max_sentences=3, min_score=0.0)
    out = AnswerPipeline(store.hybrid_retriever(), generator=gen, top_k=3, **kw).answer(question)
    if isinstance(out, Answer):
        assert out.citations
        for c in out.citations:
            assert store.document(c.doc_id).text[c.start : c.end] == c.quoted
            assert c.quoted == c.quoted.strip() and c.quoted in out.text


def test_llm_generator_cites_whole_contexts_and_reports_bad_markers() -> None:
    hits = [
        Hit(0, 1, 1.0, "d", 0, "Aspirin thins blood.", 5, 25),
        Hit(1, 2, 0.5, "e", 0, "Red apples.", 0, 11),
    ]
    ctx = contexts_from_hits(hits)
    prompts = []
    gen = LLMGenerator(lambda p: prompts.append(p) or "It thins blood [1][1] [2] [9].")
    ans = gen.generate("aspirin?", ctx)
    assert "[1] (d) Aspirin thins blood." in prompts[0] and "Question: aspirin?" in prompts[0]
    assert [(c.doc_id, c.start, c.end) for c in ans.citations] == [("d", 5, 25), ("e", 0, 11)]
    assert ans.notes == ("marker [9] names no context (2 given)",)
    with pytest.raises(InvalidInputError, match="returned int"):
        LLMGenerator(lambda p: 3).generate("q", ctx)  # type: ignore[arg-type, return-value]
    with pytest.raises(InvalidInputError, match="offsets"):
        contexts_from_hits([Hit(0, 1, 1.0, text="x")])
