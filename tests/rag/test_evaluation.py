"""Golden-set evaluation: document-level folding, BEIR folders, the CLI, and SciFact targets (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlsys.common.errors import InvalidInputError
from mlsys.common.metrics import evaluate
from mlsys.rag import (
    DocumentStore,
    EmbeddingCache,
    HashingEmbedder,
    SentenceChunker,
    evaluate_beir,
    evaluate_retriever,
    retrieval_run,
)
from mlsys.rag.__main__ import main as cli_main

TOPICS = {
    "ocean": "ocean waves tide coral reef salt water marine fish",
    "space": "planet orbit star galaxy telescope rocket astronaut moon",
    "music": "guitar melody rhythm concert orchestra piano song chord",
    "cook": "recipe oven flour butter bake kitchen spice dough",
}


def write_beir(root: Path, n_per_topic: int = 5, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    (root / "qrels").mkdir(parents=True)
    corpus, queries, qrels = [], [], []
    for t, words in TOPICS.items():
        vocab = words.split()
        for i in range(n_per_topic):
            sents = [" ".join(rng.choice(vocab, size=6).tolist()).capitalize() + "." for _ in range(4)]
            corpus.append({"_id": f"{t}{i}", "title": f"About {t} {i}", "text": " ".join(sents)})
        queries.append({"_id": f"q-{t}", "text": " ".join(vocab[:3])})
        qrels += [f"q-{t}\t{t}{i}\t1" for i in range(2)]
    (root / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    (root / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")


def test_document_level_run_takes_max_over_chunks() -> None:
    store = DocumentStore(HashingEmbedder(dim=64), chunker=SentenceChunker(size=30), progress=False)
    store.upsert(
        {
            "a": "Nothing relevant here. Still nothing. The zebra grazes.",
            "b": "The zebra runs. The zebra sleeps. The zebra eats.",
            "c": "Cats only.",
        }
    )
    retriever = store.bm25_retriever()
    run = retrieval_run(retriever, {"q": "zebra"}, k=5, doc_of=store.doc_of)
    ids, scores = retriever.search(["zebra"], k=20)
    best: dict[str, float] = {}
    for cid, s in zip(ids[0].tolist(), scores[0].tolist()):
        if cid >= 0:
            d = store.doc_of([cid])[0]
            assert d is not None
            best[d] = max(best.get(d, -np.inf), s)
    assert run["q"] == best and list(run["q"]) == sorted(best, key=lambda d: -best[d])
    res = evaluate_retriever(
        retriever, {"q": "zebra"}, {"q": {"b": 1}}, metrics=["mrr@10"], doc_of=store.doc_of
    )
    assert res["mrr@10"] == pytest.approx(evaluate(run, {"q": {"b": 1}}, ["mrr@10"])["mrr@10"])
    with pytest.raises(InvalidInputError, match="judgements"):
        evaluate_retriever(retriever, {"x": "zebra"}, {"q": {"b": 1}})


def test_evaluate_beir_folder_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_beir(tmp_path / "beir")
    ev = evaluate_beir(tmp_path / "beir", HashingEmbedder(dim=256), metrics=["ndcg@10", "recall@10"], k=10)
    assert set(ev.results) == {"bm25", "dense", "hybrid"}
    for res in ev.results.values():
        assert res["ndcg@10"] > 0.5 and len(res.query_ids) == 4
    assert ev.n_documents == 20 and ev.n_chunks == 20
    chunked = evaluate_beir(
        tmp_path / "beir", HashingEmbedder(dim=256), chunker=SentenceChunker(size=60), k=10
    )
    assert chunked.n_chunks > 20 and chunked.results["bm25"]["ndcg@10"] > 0.5
    out = tmp_path / "m.json"
    code = cli_main(
        ["evaluate", "--beir", str(tmp_path / "beir"), "--embedder", "hashing", "--no-cache", "--k", "10",
         "--chunker", "sentence:60", "--json", str(out)]
    )  # fmt: skip
    assert code == 0 and "hybrid" in capsys.readouterr().out
    assert set(json.loads(out.read_text())) == {"bm25", "dense", "hybrid", "weighted"}


@pytest.mark.slow
def test_scifact_targets(dataset) -> None:  # type: ignore[no-untyped-def]
    """SciFact test split: BM25 >= 0.67, MiniLM dense 0.645 +- 0.003, hybrid >= 0.72 / R@100 >= 0.945.

    RRF(60) of these two systems measures 0.717 (the issue's own reference: 0.7185), so the 0.72
    target is met by the weighted fusion (min-max scores, equal weights - the best of a small grid
    on the *train* split); RRF(60) is held to R@100 >= 0.945 and nDCG@10 >= 0.715.
    Uses the embedding cache (fill it once with benchmarks/rag/fill_embedding_cache.py).
    """
    pytest.importorskip("sentence_transformers")
    from mlsys.rag import MiniLMEmbedder

    root = dataset("scifact")
    ev = evaluate_beir(
        root,
        MiniLMEmbedder(cache=EmbeddingCache()),
        systems=["bm25", "dense", "hybrid", "weighted"],
        metrics=["ndcg@10", "recall@100", "mrr@10"],
    )
    bm25, dense, rrf, weighted = (ev.results[s] for s in ("bm25", "dense", "hybrid", "weighted"))
    assert bm25["ndcg@10"] >= 0.67
    assert abs(dense["ndcg@10"] - 0.645) <= 0.003
    assert rrf["ndcg@10"] >= 0.715 and rrf["recall@100"] >= 0.945
    assert weighted["ndcg@10"] >= 0.72 and weighted["recall@100"] >= 0.945
