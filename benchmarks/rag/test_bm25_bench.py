"""BM25 query throughput: mlsys BM25Index (scipy.sparse) vs bm25s, side by side, interleaved.

Corpus and queries: SciFact (5,183 passages ``title + " " + text``, all 1,109 queries) when the
shared data is present, else a generated corpus. Both systems use the same analysis (lower-case,
Lucene's English stop words, PyStemmer English stemmer) and BM25 "lucene" with k1=1.5, b=0.75,
single thread, top 100. Two comparisons:

* end to end: query strings in, top-100 ids and scores out (tokenisation included);
* scoring only: pre-tokenised queries in (our term lists / bm25s token ids).

Each round times every system once, in turn; the reported figure is the median over rounds and
the ratio ours/bm25s. Smoke mode: 400 generated documents, 1 round, no ratio assertion.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from conftest import SMOKE, size
from mlsys.rag import Analyzer, BM25Index

ROUNDS = size(7, 1)
K = 100


def _corpus(dataset: Callable[[str], Any]) -> tuple[list[str], list[str], str]:
    if not SMOKE:
        try:
            from mlsys.common.data import load_beir

            ds = load_beir(dataset("scifact"))
            docs = [(d["title"] + " " + d["text"]).strip() for d in ds.corpus.values()]
            return docs, list(ds.queries.values()), "SciFact corpus (5,183 docs), all 1,109 queries"
        except pytest.skip.Exception:
            pass
    rng = np.random.default_rng(0)
    vocab = [f"term{i}" for i in range(3000)]
    p = 1.0 / np.arange(1, 3001)
    p /= p.sum()
    docs = [" ".join(rng.choice(vocab, size=120, p=p).tolist()) for _ in range(size(5000, 400))]
    queries = [" ".join(rng.choice(vocab, size=8, p=p).tolist()) for _ in range(size(1000, 50))]
    return docs, queries, f"generated corpus ({len(docs)} docs, {len(queries)} queries)"


def _time(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def test_bm25_query_throughput_vs_bm25s(benchmark: Any, dataset: Callable[[str], Any]) -> None:
    bm25s = pytest.importorskip("bm25s")
    stemmer_mod = pytest.importorskip("Stemmer")
    docs, queries, what = _corpus(dataset)
    stemmer = stemmer_mod.Stemmer("english")

    ours = BM25Index()
    t_ours_index = _time(lambda: ours.add(np.arange(len(docs)), docs))
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")

    def ref_index() -> None:
        ref.index(
            bm25s.tokenize(docs, stopwords="en", stemmer=stemmer, show_progress=False), show_progress=False
        )

    t_ref_index = _time(ref_index)
    ours.search(queries[:2], K)  # builds the weight matrix (lazy, once per change)
    analyzer = Analyzer()
    our_terms = [analyzer.terms(q) for q in queries]
    ref_tokens = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)

    def ours_e2e() -> Any:
        return ours.search(queries, K)

    def ref_e2e() -> Any:
        qt = bm25s.tokenize(queries, stopwords="en", stemmer=stemmer, show_progress=False)
        return ref.retrieve(qt, k=K, show_progress=False, n_threads=1)

    def ours_score() -> Any:
        return ours.search(our_terms, K)

    def ref_score() -> Any:
        return ref.retrieve(ref_tokens, k=K, show_progress=False, n_threads=1)

    times: dict[str, list[float]] = {n: [] for n in ("ours_e2e", "ref_e2e", "ours_score", "ref_score")}
    for _ in range(ROUNDS):
        times["ours_e2e"].append(_time(ours_e2e))
        times["ref_e2e"].append(_time(ref_e2e))
        times["ours_score"].append(_time(ours_score))
        times["ref_score"].append(_time(ref_score))
    benchmark.pedantic(ours_e2e, rounds=1, iterations=1)

    # same top-10 scores: the two systems compute the same BM25
    _, a_sc = ours_e2e()
    _, b_sc = ref_e2e()
    np.testing.assert_allclose(a_sc[:, :10], b_sc[:, :10], rtol=1e-4, atol=1e-5)

    qps = {n: len(queries) / statistics.median(v) for n, v in times.items()}
    r_e2e = qps["ours_e2e"] / qps["ref_e2e"]
    r_score = qps["ours_score"] / qps["ref_score"]
    benchmark.extra_info["ratios"] = {  # mlsys time / bm25s time (medians over interleaved rounds)
        "end_to_end_vs_bm25s": 1 / r_e2e,
        "scoring_vs_bm25s": 1 / r_score,
    }
    benchmark.extra_info["qps"] = qps
    print(
        f"\nBM25 throughput on {what}; top-{K}, single thread, median of {ROUNDS} interleaved rounds; "
        f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f}\n"
        f"  indexing: mlsys {t_ours_index:.2f} s, bm25s {t_ref_index:.2f} s (tokenisation included)\n"
        f"  end to end (strings in):  mlsys {qps['ours_e2e']:8.0f} q/s   bm25s {qps['ref_e2e']:8.0f} q/s"
        f"   ratio {r_e2e:.2f}x\n"
        f"  scoring only (tokens in): mlsys {qps['ours_score']:8.0f} q/s   bm25s {qps['ref_score']:8.0f} q/s"
        f"   ratio {r_score:.2f}x"
    )
    if not SMOKE:
        assert r_e2e >= 1.0, f"mlsys BM25 end-to-end throughput {r_e2e:.2f}x bm25s; expected >= 1"
