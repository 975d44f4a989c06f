"""SciFact setup shared by the re-ranking, gate and answer benchmarks, with on-disk caches.

Everything expensive is cached under ``<cache root>/rag/`` (``~/.cache/mlsys/rag``), keyed by a
sha256 of what it depends on (code feature version, embedding spaces, query texts, candidate ids),
so a stale cache is never reused:

* sentence vectors: ``sentences-minilm-msl128.sqlite`` (an :class:`EmbeddingCache`);
* feature matrices: ``features-<key>.npz``;
* trained re-rankers: ``learned-<key>/``; fine-tuned cross-encoders: ``cross-encoder-<key>/``.

Command line (long jobs, run once)::

    python benchmarks/rag/scifact_rerank.py finetune --budget 540   # cross-encoder, ~10 min
    python benchmarks/rag/scifact_rerank.py features                # sentence vectors + features
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlsys.common.data import load_beir
from mlsys.rag import (
    DocumentStore,
    EmbeddingCache,
    Hit,
    MiniLMEmbedder,
    beir_documents,
    default_cache_dir,
    minilm_model_path,
)

HERE = Path(__file__).resolve().parent
DEPTH = 100  # candidates re-ranked per query (the hybrid's top 100)


def data_dir() -> Path:
    return Path(os.environ.get("MLSYS_DATA", HERE.parents[2] / "shared" / "data")) / "scifact"


def cache_dir() -> Path:
    d = default_cache_dir() / "rag"
    d.mkdir(parents=True, exist_ok=True)
    return d


def sha(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class SciFact:
    store: DocumentStore
    train_queries: dict[str, str]
    train_qrels: dict[str, dict[str, int]]
    test_queries: dict[str, str]
    test_qrels: dict[str, dict[str, int]]
    sentence_embedder: MiniLMEmbedder


def load(root: Path | None = None) -> SciFact:
    """The SciFact store (MiniLM vectors from the embedding cache) and both qrels splits."""
    root = root or data_dir()
    test = load_beir(root, split="test")
    train = load_beir(root, split="train")
    emb = MiniLMEmbedder(cache=EmbeddingCache(), num_threads=2)
    store = DocumentStore(emb)
    store.upsert(beir_documents(test.corpus))
    store.bm25.refresh()
    sent = MiniLMEmbedder(
        cache=EmbeddingCache(cache_dir() / "sentences-minilm-msl128.sqlite"),
        max_seq_length=128,
        num_threads=2,
    )
    return SciFact(store, dict(train.queries), train.qrels, dict(test.queries), test.qrels, sent)


def hybrid(store: DocumentStore) -> Any:
    """The best first-stage system of the retrieval table: weighted fusion, equal weights, depth 100."""
    return store.hybrid_retriever(fusion="weighted", depth=DEPTH, name="weighted")


def candidates(sf: SciFact, queries: dict[str, str]) -> list[list[Hit]]:
    res = hybrid(sf.store).retrieve([queries[q] for q in queries], DEPTH)
    return [list(r.hits) for r in res]


def finetune(budget: float, max_length: int, n_negatives: int) -> Path:
    from mlsys.rag.rerank import fine_tune_cross_encoder, mine_hard_negatives

    sf = load()
    pairs = mine_hard_negatives(
        hybrid(sf.store), sf.train_queries, sf.train_qrels, n_negatives=n_negatives, depth=30
    )
    key = sha([sf.store.space.space_id, pairs, budget, max_length])
    out = cache_dir() / f"cross-encoder-{key}"
    if (out / "report.json").is_file():
        print(f"cached: {out}", file=sys.stderr)
        return out
    t = time.time()
    rep = fine_tune_cross_encoder(
        minilm_model_path(),
        pairs,
        out,
        time_budget_s=budget,
        max_length=max_length,
        num_threads=2,
        batch_size=16,
    )
    info = {
        "pairs": len(pairs),
        "positives": int(sum(p[2] for p in pairs)),
        "steps": rep.steps,
        "pairs_seen": rep.pairs_seen,
        "epochs_completed": rep.epochs_completed,
        "seconds": rep.seconds,
        "stopped_by_budget": rep.stopped_by_budget,
        "mean_loss_last": rep.mean_loss_last,
        "max_length": max_length,
        "budget_s": budget,
        "load_before": os.getloadavg()[0],
        "wall_s": time.time() - t,
    }
    (out / "report.json").write_text(json.dumps(info, indent=2))
    (cache_dir() / "cross-encoder-latest.txt").write_text(str(out))
    print(json.dumps(info, indent=2))
    return out


def layers_report(out_dir: Path | None = None, *, top_k: int = 3, sample: int = 40) -> str:
    """The three evaluation layers on SciFact test: retrieval metrics (layer 1), the offline judge's
    faithfulness of the extractive answers the gated pipeline gives (layer 2), a review sample
    exported as JSONL and CSV (layer 3). Reuses the caches of :func:`full_report`."""
    from mlsys.rag.answer import ExtractiveGenerator, contexts_from_hits
    from mlsys.rag.judge import (
        EvalRecord,
        OfflineJudge,
        ThreeLayerReport,
        judge_records,
        review_sample,
        summarize_faithfulness,
        write_csv,
        write_jsonl,
    )
    from mlsys.rag.rerank import RelevanceGate

    out_dir = out_dir or cache_dir()
    sf = load()
    _, fit, _, test, rr, cal = calibrated_reranker(sf)
    saved = json.loads((out_dir / "gate.json").read_text())
    gate = RelevanceGate.load(out_dir / "gate.json", lexical=sf.store.bm25 if saved.get("lexical") else None)
    gen = ExtractiveGenerator(max_sentences=2)
    answers: list[str | None] = []
    contexts: list[list[str]] = []
    meta = []
    raws = [rr.predict_matrix(x) for x in test.feats]
    view = None
    if "bi_encoder" in gate.retrievers:
        from mlsys.rag.rerank import EmbedderReranker

        view = EmbedderReranker(bi_encoder(sf, fit))
    for qid, q, c, raw, rel in zip(test.ids, test.queries, test.cands, raws, test.qrels):
        lst = ranked(c, raw, cal)
        if view is not None:
            lst = with_view([lst], [q], view)[0]
        d = gate.decide(lst, q)
        ctx = contexts_from_hits(lst[:top_k])
        hit = any(h.doc_id in rel for h in lst[:top_k])
        if d.decision != "answer":
            answers.append(None)
            contexts.append([x.text for x in ctx])
            meta.append((qid, q, hit, d.decision, ()))
            continue
        a = gen.generate(q, ctx)
        answers.append(a.text or None)
        contexts.append([x.text for x in ctx])
        meta.append(
            (
                qid,
                q,
                hit,
                None if a.text else "no_supporting_sentence",
                tuple(ci.doc_id for ci in a.citations),
            )
        )
    verdicts = judge_records(OfflineJudge(), answers, contexts)
    records = [
        EvalRecord(qid, q, tuple(ctx), ans, v, hit, reason, cited)
        for (qid, q, hit, reason, cited), ans, ctx, v in zip(meta, answers, contexts, verdicts)
    ]
    items = review_sample(records, sample, seed=0)
    write_jsonl(items, out_dir / "review_sample.jsonl")
    write_csv(items, out_dir / "review_sample.csv")
    layer1 = dict(evaluate_scores(test, raws, ["ndcg@10", "recall@10", "mrr@10"]).mean)
    report = ThreeLayerReport(layer1, summarize_faithfulness(verdicts), items, len(records),
                              notes=(f"extractive answers from the re-ranked top {top_k}, gate thresholds from the dev split",
                                     "offline judge: a claim is supported when a context holds >= 80% of its terms"))  # fmt: skip
    md = report.to_markdown()
    (out_dir / "three_layer_report.md").write_text(md + "\n")
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    ft = sub.add_parser("finetune")
    ft.add_argument("--budget", type=float, default=540.0)
    ft.add_argument("--max-length", type=int, default=192)
    ft.add_argument("--negatives", type=int, default=4)
    rep = sub.add_parser("report")
    rep.add_argument("--out", type=Path, default=None)
    lay = sub.add_parser("layers")
    lay.add_argument("--out", type=Path, default=None)
    sub.add_parser(
        "bi-encoders", help="dev-only comparison of BI_ENCODER_CANDIDATES (trains what is not cached)"
    )
    args = p.parse_args(argv)
    if args.cmd == "finetune":
        finetune(args.budget, args.max_length, args.negatives)
    elif args.cmd == "bi-encoders":
        print(json.dumps(compare_bi_encoders(), indent=2, default=str))
    elif args.cmd == "layers":
        print(layers_report(args.out))
    else:
        print(json.dumps(full_report(args.out), indent=2, default=str))
    return 0


# ------------------------------------------------------------------------------ cached stages
def _hits_from_arrays(
    sf: SciFact, ids: np.ndarray, scores: np.ndarray, prov: dict[str, np.ndarray]
) -> list[Hit]:
    out = []
    for r in range(ids.shape[0]):
        cid = int(ids[r])
        if cid < 0:
            break
        doc_id, seq, text, start, end = sf.store.chunk_info(cid)
        p = {
            n: (int(prov[n + "_rank"][r]), float(prov[n + "_score"][r]))
            for n in ("dense", "bm25")
            if prov[n + "_rank"][r]
        }
        out.append(Hit(cid, r + 1, float(scores[r]), doc_id, seq, text, start, end, provenance=p))
    return out


def cached_candidates(
    sf: SciFact,
    queries: list[str],
    *,
    deny: list[list[int]] | None = None,
    allow: list[list[int]] | None = None,
    tag: str = "plain",
) -> list[list[Hit]]:
    """The weighted hybrid's top ``DEPTH`` per query (optionally with ids denied / allowed per query), cached."""
    parts = [
        sf.store.space.space_id,
        sf.store.bm25.config.to_dict(),
        sf.store.version,
        queries,
        deny,
        DEPTH,
        tag,
    ]
    key = sha(parts if allow is None else [*parts, allow])
    path = cache_dir() / f"candidates-{key}.npz"
    names = ("dense", "bm25")
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        arrs = {k: z[k] for k in z.files}
    else:
        retr = hybrid(sf.store)
        n = len(queries)
        arrs = {"ids": np.full((n, DEPTH), -1, np.int64), "scores": np.full((n, DEPTH), -np.inf, np.float32)}
        for nm in names:
            arrs[nm + "_rank"] = np.zeros((n, DEPTH), np.int64)
            arrs[nm + "_score"] = np.full((n, DEPTH), -np.inf, np.float32)
        groups = [list(range(n))] if deny is None and allow is None else [[i] for i in range(n)]
        for g in groups:
            res = retr.retrieve(
                [queries[i] for i in g],
                DEPTH,
                deny=None if deny is None else deny[g[0]],
                allow=None if allow is None else allow[g[0]],
            )
            for i, r in zip(g, res):
                for j, h in enumerate(r.hits):
                    arrs["ids"][i, j], arrs["scores"][i, j] = h.id, h.score
                    for nm in names:
                        if nm in h.provenance:
                            arrs[nm + "_rank"][i, j], arrs[nm + "_score"][i, j] = h.provenance[nm]
        np.savez(path, **arrs)
    return [
        _hits_from_arrays(
            sf, arrs["ids"][i], arrs["scores"][i], {k: v[i] for k, v in arrs.items() if "_" in k}
        )
        for i in range(len(queries))
    ]


def cached_features(
    feats: Any, queries: list[str], cands: list[list[Hit]], *, tag: str = ""
) -> list[np.ndarray]:
    """Feature matrices of (query, candidates), cached by everything they depend on."""
    from mlsys.rag.rerank import FEATURE_VERSION

    space = feats.sentence_space.space_id if feats.sentence_space is not None else None
    key = sha([FEATURE_VERSION, list(feats.names), space, feats.store.space.space_id, feats.store.version, queries,
               [[(h.id, h.score, sorted(h.provenance.items())) for h in c] for c in cands], tag])  # fmt: skip
    path = cache_dir() / f"features-{key}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        flat, lens = z["x"], z["lens"]
    else:
        mats = feats.matrices(queries, cands, progress=sys.stderr.isatty())
        lens = np.array([m.shape[0] for m in mats], np.int64)
        flat = np.concatenate(mats) if mats else np.zeros((0, len(feats.names)), np.float32)
        np.savez(path, x=flat, lens=lens)
    out, pos = [], 0
    for n in lens.tolist():
        out.append(flat[pos : pos + n])
        pos += n
    return out


# ------------------------------------------------------------------------------ the experiment
RERANK_CONFIG: dict[str, Any] = {
    "num_leaves": (7, 15, 31),
    "min_data_in_leaf": (20, 50),
    "learning_rate": (0.05,),
    "max_rounds": 600,
    "early_stopping_rounds": 60,
}


@dataclass
class Split:
    ids: list[str]
    queries: list[str]
    qrels: list[dict[str, int]]
    cands: list[list[Hit]]
    feats: list[np.ndarray]
    labels: list[np.ndarray]


def _split(
    sf: SciFact,
    feats: Any,
    ids: list[str],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    all_cands: dict[str, list[Hit]],
    all_x: dict[str, np.ndarray],
) -> Split:
    from mlsys.rag.rerank import labels_from_qrels

    cands = [all_cands[q] for q in ids]
    rows = [qrels[q] for q in ids]
    return Split(
        ids, [queries[q] for q in ids], rows, cands, [all_x[q] for q in ids], labels_from_qrels(cands, rows)
    )


def prepare(sf: SciFact, *, sentences: bool = True, seed: int = 0) -> tuple[Any, Split, Split, Split]:
    """Features of the hybrid top 100 for train (split into ranker-fit and dev) and test queries."""
    from mlsys.rag.rerank import RerankFeatures

    feats = RerankFeatures(
        sf.store, sf.sentence_embedder if sentences else None, retrievers=("dense", "bm25")
    )
    out = {}
    for name, queries in (("train", sf.train_queries), ("test", sf.test_queries)):
        ids = sorted(queries)
        texts = [queries[q] for q in ids]
        cands = cached_candidates(sf, texts)
        x = cached_features(feats, texts, cands)
        out[name] = ({q: c for q, c in zip(ids, cands)}, {q: m for q, m in zip(ids, x)})
    tr = sorted(sf.train_queries)
    perm = np.random.default_rng(seed).permutation(len(tr))
    n_dev = round(0.25 * len(tr))
    dev_ids = sorted(tr[i] for i in perm[:n_dev])
    fit_ids = sorted(tr[i] for i in perm[n_dev:])
    fit = _split(sf, feats, fit_ids, sf.train_queries, sf.train_qrels, *out["train"])
    dev = _split(sf, feats, dev_ids, sf.train_queries, sf.train_qrels, *out["train"])
    test = _split(sf, feats, sorted(sf.test_queries), sf.test_queries, sf.test_qrels, *out["test"])
    return feats, fit, dev, test


def trained_reranker(feats: Any, fit: Split, *, seed: int = 0, tag: str = "") -> Any:
    from mlsys.rag.rerank import LearnedReranker, LearnedRerankerConfig

    cfg = LearnedRerankerConfig(**RERANK_CONFIG, seed=seed)
    key = sha([cfg.to_dict(), list(feats.names), [m.tobytes().hex()[:64] + str(m.shape) for m in fit.feats],
               [y.tolist() for y in fit.labels], tag])  # fmt: skip
    path = cache_dir() / f"learned-{key}"
    if (path / "manifest.json").is_file():
        return LearnedReranker.load(path, feats)
    rr = LearnedReranker(feats, cfg).fit_matrices(fit.feats, fit.labels)
    rr.save(path)
    return rr


def run_of(split: Split, scores: list[np.ndarray]) -> dict[str, dict[str, float]]:
    """TREC run (document level: max over a document's chunks) from per-candidate scores."""
    run: dict[str, dict[str, float]] = {}
    for qid, cands, sc in zip(split.ids, split.cands, scores):
        row: dict[str, float] = {}
        for h, s in zip(cands, sc.tolist()):
            d = h.doc_id or ""
            row[d] = max(row.get(d, -np.inf), float(s))
        run[qid] = row
    return run


def evaluate_scores(split: Split, scores: list[np.ndarray], metrics: list[str]) -> Any:
    from mlsys.common.metrics import evaluate

    qrels = {q: r for q, r in zip(split.ids, split.qrels)}
    return evaluate(run_of(split, scores), qrels, metrics, missing_queries="zero", empty_queries="zero")


# ------------------------------------------------------------------------------ gate and report
def ranked(cands: list[Hit], raw: np.ndarray, cal: Any) -> list[Hit]:
    """The re-ranked list as CalibratedReranker(LearnedReranker) returns it, from precomputed raw scores."""
    import dataclasses

    order = np.argsort(-raw.astype(np.float64), kind="stable")
    prob = cal.transform(raw[order])
    out = []
    for r, (j, p) in enumerate(zip(order.tolist(), prob.tolist()), start=1):
        h = cands[j]
        prov = dict(h.provenance) | {"learned": (r, float(raw[j])), "learned+calibrated": (r, float(p))}
        out.append(dataclasses.replace(h, rank=r, score=float(p), provenance=prov))
    return out


def constructed_gate_set(
    sf: SciFact, feats: Any, rr: Any, cal: Any, split: Split, *, top_k: int = 10, seed: int = 0, tag: str = ""
) -> tuple[list[list[Hit]], np.ndarray, list[str], list[str]]:
    """Answerable lists (a qrel document in the re-ranked top ``top_k``) and two kinds of unanswerable:
    the claim with another claim's candidate set (retrieved and scored *for this claim* inside that
    set: ``allow=`` the other claim's ids), and the claim retrieved with its qrel documents removed.
    Returns the lists, their labels, their kinds and the claim each list was retrieved for."""
    lists: list[list[Hit]] = []
    labels: list[int] = []
    kinds: list[str] = []
    queries: list[str] = []
    raws = [rr.predict_matrix(x) for x in split.feats]
    for q, c, raw, rel in zip(split.queries, split.cands, raws, split.qrels):
        lst = ranked(c, raw, cal)
        if any(h.doc_id in rel for h in lst[:top_k]):
            lists.append(lst), labels.append(1), kinds.append("answerable"), queries.append(q)
    n = len(split.ids)
    perm = np.random.default_rng(seed).permutation(n)
    perm = np.where(perm == np.arange(n), (perm + 1) % n, perm)
    keep = [i for i in range(n) if not any(h.doc_id in split.qrels[i] for h in split.cands[perm[i]])]
    kq = [split.queries[i] for i in keep]
    co = cached_candidates(
        sf, kq, allow=[[h.id for h in split.cands[perm[i]]] for i in keep], tag="swap" + tag
    )
    xo = cached_features(feats, kq, co, tag="swap" + tag)
    for q, c, x in zip(kq, co, xo):
        (
            lists.append(ranked(c, rr.predict_matrix(x), cal)),
            labels.append(0),
            kinds.append("other claim's set"),
            queries.append(q),
        )
    deny = [[cid for d in rel for cid in sf.store.chunk_ids(d) if d in sf.store] for rel in split.qrels]
    cd = cached_candidates(sf, split.queries, deny=deny, tag="deny" + tag)
    xd = cached_features(feats, split.queries, cd, tag="deny" + tag)
    for q, c, x in zip(split.queries, cd, xd):
        lists.append(ranked(c, rr.predict_matrix(x), cal)), labels.append(0), kinds.append("qrels removed")
        queries.append(q)
    return lists, np.array(labels), kinds, queries


#: the bi-encoder's fine-tune as stages of ``(epochs, hard negatives per example)``, each stage
#: starting from the previous one's weights with a fresh warm-up/decay schedule. Chosen on the dev
#: claims by the gate's best grouped-CV AUROC there (`bi-encoders`; README), with the cosine's dev
#: nDCG@10 alongside: one stage of 2 -> 0.696 / 0.918, 4 -> 0.739 / 0.925, 8 -> 0.763 / 0.929
#: epochs; 8 epochs, then 4 with 3 hard negatives per example -> 0.770 / 0.935 (30 minutes a stage
#: on 2 cores). After the negative-mask fix (cache key "mask-2"): 8 -> 0.760 / 0.929, 8 + 4 -> 0.770 / 0.936
BI_ENCODER_SCHEDULE: tuple[tuple[int, int], ...] = ((8, 1), (4, 3))
#: the schedules compared on the dev claims (``bi-encoders`` prints each one's dev figures)
BI_ENCODER_CANDIDATES: tuple[tuple[tuple[int, int], ...], ...] = (((8, 1),), ((8, 1), (4, 3)))


def bi_encoder(
    sf: SciFact, fit: Split, *, schedule: tuple[tuple[int, int], ...] = BI_ENCODER_SCHEDULE
) -> Any:
    """MiniLM fine-tuned (:func:`~mlsys.rag.rerank.fine_tune_bi_encoder`) on the ranker-fit claims only,
    with 15 hard negatives per claim from the hybrid's top 30, so that its scores on the dev claims
    (where the gate is trained) and the test claims are out of sample. ``schedule`` is a sequence of
    ``(epochs, negatives per example)`` stages, each continuing from the last (stage ``i`` is seeded
    ``i``, so its negatives are drawn anew). Every stage is cached; about 3.5 minutes an epoch on 2
    cores with one negative per example."""
    from mlsys.rag.rerank import fine_tune_bi_encoder, mine_hard_negatives

    if not schedule:
        raise ValueError("schedule: expected at least one (epochs, negatives) stage")
    queries = dict(zip(fit.ids, fit.queries))
    pairs = mine_hard_negatives(
        hybrid(sf.store), queries, {q: sf.train_qrels[q] for q in fit.ids}, n_negatives=15, depth=30
    )
    start: Any = minilm_model_path()
    for i, (epochs, negatives) in enumerate(schedule):
        # the training code's revision is part of the key: 2 = a passage relevant to a query is
        # never its negative, also when drawn as another query's hard negative (2026-12-07)
        key = [sf.store.space.space_id, pairs, list(map(list, schedule[: i + 1])), "mask-2"]
        out = cache_dir() / f"bi-encoder-{sha(key)}"
        if not (out / "report.json").is_file():
            rep = fine_tune_bi_encoder(start, pairs, out, epochs=epochs, negatives_per_example=negatives,
                                       seed=i, num_threads=2, progress=sys.stderr.isatty())  # fmt: skip
            info = {"pairs": len(pairs), "positives": int(sum(p[2] for p in pairs)), "epochs": epochs,
                    "negatives_per_example": negatives, "schedule": schedule[: i + 1],
                    "steps": rep.steps, "seconds": rep.seconds, "mean_loss_last": rep.mean_loss_last,
                    "load_before": os.getloadavg()[0]}  # fmt: skip
            (out / "report.json").write_text(json.dumps(info, indent=2))
        start = out
    return MiniLMEmbedder(start, cache=EmbeddingCache(cache_dir() / "bi-encoder.sqlite"), num_threads=2)


def with_view(lists: list[list[Hit]], queries: list[str], view: Any) -> list[list[Hit]]:
    """Each list in its own order with ``view``'s ``(rank, score)`` added to every hit's provenance:
    what a :class:`~mlsys.rag.rerank.RerankChain` of ``view`` and the re-ranker hands the gate."""
    import dataclasses

    out = []
    for q, lst in zip(queries, lists):
        got = {h.id: h.provenance[view.name] for h in view.rerank(q, lst)} if lst else {}
        out.append(
            [dataclasses.replace(h, provenance=dict(h.provenance) | {view.name: got[h.id]}) for h in lst]
        )
    return out


#: the relevance-gate settings compared on the dev lists (grouped cross-validation); the best is shipped
GATE_GRID: dict[str, tuple[Any, ...]] = {
    "retrievers": (
        ("dense", "bm25"),
        ("dense", "bm25", "learned"),
        ("dense", "bm25", "learned", "bi_encoder"),
    ),
    "lexical": (False, True),
    "C": (1.0, 0.3, 0.1),
}


def gate_cv_auroc(
    make: Any, x: np.ndarray, y: np.ndarray, groups: list[str], *, folds: int = 5, repeats: int = 3
) -> float:
    """AUROC of out-of-fold gate probabilities on the dev lists, folds grouped by claim (a claim's
    answerable and unanswerable lists are never split), averaged over ``repeats`` fold dealings."""
    from sklearn.metrics import roc_auc_score

    uniq = sorted(set(groups))
    aucs = []
    for seed in range(repeats):
        fold_of = dict(zip(uniq, np.random.default_rng(seed).permutation(len(uniq)) % folds))
        g = np.array([fold_of[q] for q in groups])
        p = np.zeros(y.shape[0])
        for k in range(folds):
            p[g == k] = make().fit_features(x[g != k], y[g != k]).predict_proba_features(x[g == k])
        aucs.append(float(roc_auc_score(y, p)))
    return float(np.mean(aucs))


def chosen_gate(
    sf: SciFact,
    lists: list[list[Hit]],
    y: np.ndarray,
    queries: list[str],
    *,
    views: tuple[tuple[str, ...], ...] = GATE_GRID["retrievers"],
) -> tuple[Any, list[dict[str, Any]]]:
    """The :data:`GATE_GRID` setting with the best grouped-CV AUROC on the dev lists, refit on all of
    them (``views``: the grid's view sets to compare, all of them by default)."""
    from mlsys.rag.rerank import RelevanceGate

    rows = []
    for retr in views:
        for lex in GATE_GRID["lexical"]:
            for c in GATE_GRID["C"]:

                def make(retr: Any = retr, lex: bool = lex, c: float = c) -> Any:
                    return RelevanceGate(
                        retrievers=retr, C=c, precision=0.9, lexical=sf.store.bm25 if lex else None
                    )

                x = make().feature_matrix(lists, queries)
                rows.append({"retrievers": list(retr), "lexical": lex, "C": c, "dev_cv_auroc": gate_cv_auroc(make, x, y, queries), "make": make})  # fmt: skip
    best = max(rows, key=lambda r: r["dev_cv_auroc"])  # first wins ties: fewer features, then larger C
    gate = best["make"]().fit(lists, y, queries)
    return gate, rows


def calibrated_reranker(sf: SciFact) -> tuple[Any, Split, Split, Split, Any, Any]:
    """The sentence-feature splits (fit, dev, test), the learned re-ranker and its Platt calibration
    fitted on the first half of the dev claims, as :func:`full_report` builds them (cached)."""
    from mlsys.rag.rerank import Calibrator

    feats, fit, dev, test = prepare(sf, sentences=True)
    rr = trained_reranker(feats, fit, tag="sent")
    dev_raw = [rr.predict_matrix(x) for x in dev.feats]
    half = len(dev.ids) // 2
    cal = Calibrator("platt").fit(
        (np.concatenate(dev.labels[:half]) > 0).astype(float), np.concatenate(dev_raw[:half])
    )
    return feats, fit, dev, test, rr, cal


def dev_gate_lists(sf: SciFact) -> tuple[Split, Split, list[list[Hit]], np.ndarray, list[str]]:
    """The fit and dev splits and the dev claims' constructed gate set (re-ranked, calibrated)."""
    feats, fit, dev, _, rr, cal = calibrated_reranker(sf)
    lists, y, _, queries = constructed_gate_set(sf, feats, rr, cal, dev, tag="dev")
    return fit, dev, lists, y, queries


def compare_bi_encoders() -> list[dict[str, Any]]:
    """Each schedule of :data:`BI_ENCODER_CANDIDATES` on the **dev** claims only: the fine-tuned
    cosine's nDCG@10 on the hybrid's top 100, and the best grouped-CV AUROC of the gates of
    :data:`GATE_GRID` that read it, and ``chosen``: the rule behind :data:`BI_ENCODER_SCHEDULE`,
    the best gate CV, ties (within 0.001) to the earlier, shorter schedule. No test figure is
    computed here."""
    from mlsys.rag.rerank import EmbedderReranker

    sf = load()
    fit, dev, lists, y, queries = dev_gate_lists(sf)
    bi_views = tuple(v for v in GATE_GRID["retrievers"] if "bi_encoder" in v)
    rows = []
    for schedule in BI_ENCODER_CANDIDATES:
        bi = EmbedderReranker(bi_encoder(sf, fit, schedule=schedule))
        ndcg = evaluate_scores(dev, [bi.score(q, c) for q, c in zip(dev.queries, dev.cands)], ["ndcg@10"])
        # only the gates that read the bi-encoder: the others do not depend on the schedule
        _, grid = chosen_gate(sf, with_view(lists, queries, bi), y, queries, views=bi_views)
        best = max(grid, key=lambda r: r["dev_cv_auroc"])
        rows.append({"schedule": schedule, "dev_ndcg@10": ndcg.mean["ndcg@10"],
                     "dev_cv_auroc": best["dev_cv_auroc"], "gate": {k: best[k] for k in ("retrievers", "lexical", "C")},
                     "fine_tune": json.loads((Path(bi.embedder.model_path) / "report.json").read_text())})  # fmt: skip
    top = max(r["dev_cv_auroc"] for r in rows)
    first = next(r for r in rows if r["dev_cv_auroc"] >= top - 0.001)
    for r in rows:
        r["chosen"] = r is first
    return rows


def risk_coverage_plot(curves: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, rc in curves.items():
        ax.plot(rc.coverage, rc.risk, label=f"{name} (AURC {rc.aurc:.3f})")
    ax.axhline(0.1, color="grey", ls=":", lw=1, label="risk 0.10 (precision 0.90)")
    ax.set_xlabel("coverage (share of questions answered)")
    ax.set_ylabel("risk (share of answered that are unanswerable)")
    ax.set_title("Relevance gate, SciFact test (constructed set)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def full_report(
    out_dir: Path | None = None, *, ce_top_n: int = 20, latency_queries: int = 100
) -> dict[str, Any]:
    """Every figure of the README's re-ranking section (uses and fills the caches)."""
    from sklearn.metrics import roc_auc_score

    from mlsys.common.metrics import compare
    from mlsys.rag.rerank import (
        Calibrator,
        choose_top_n,
        coverage_at_precision,
        expected_calibration_error,
        risk_coverage_curve,
    )

    out_dir = out_dir or cache_dir()
    fig: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": os.getloadavg()[0]}
    sf = load()
    feats, fit, dev, test = prepare(sf, sentences=True)
    rr = trained_reranker(feats, fit, tag="sent")
    fig["params"], fig["validation"] = rr.params_, {k: v for k, v in rr.validation_.items() if k != "grid"}
    fig["grid"] = rr.validation_.get("grid")
    metrics = ["ndcg@10", "recall@100", "mrr@10"]
    hyb = evaluate_scores(test, [np.array([h.score for h in c]) for c in test.cands], metrics)
    test_raw = [rr.predict_matrix(x) for x in test.feats]
    lrn = evaluate_scores(test, test_raw, metrics)
    fig["test"] = {"hybrid_weighted": dict(hyb.mean), "learned": dict(lrn.mean)}
    cmp = compare(lrn, hyb, "ndcg@10", n_resamples=10_000, seed=0)
    fig["compare_learned_vs_hybrid"] = str(cmp)
    fig["compare"] = {
        "diff": cmp.diff,
        "ci": [cmp.ci_low, cmp.ci_high],
        "p_rand": cmp.p_randomization,
        "p_t": cmp.p_ttest,
    }
    # no-sentence ablation (same protocol, cached)
    feats0, fit0, _, test0 = prepare(sf, sentences=False)
    rr0 = trained_reranker(feats0, fit0, tag="nosent")
    fig["test"]["learned_without_sentence_features"] = dict(
        evaluate_scores(test0, [rr0.predict_matrix(x) for x in test0.feats], metrics).mean
    )
    # latency of the stage (features + LightGBM), per query, warm sentence vectors, query vectors cached
    sample = list(range(min(latency_queries, len(test.ids))))
    feats.warm([h for i in sample for h in test.cands[i]])
    choice = choose_top_n(rr, [test.queries[i] for i in sample], [test.cands[i] for i in sample],
                          budget_ms=250.0, grid=(20, 50, 100))  # fmt: skip
    fig["latency_p95_ms"] = choice.latency_ms
    fig["latency_choice"] = {"budget_ms": choice.budget_ms, "top_n": choice.top_n, "fits": choice.fits}
    fig["load_latency"] = os.getloadavg()[0]
    # calibration: Platt and isotonic fitted on half of the dev split, ECE on the other half (and on test)
    dev_raw = [rr.predict_matrix(x) for x in dev.feats]
    half = len(dev.ids) // 2
    cal_s, cal_y = np.concatenate(dev_raw[:half]), (np.concatenate(dev.labels[:half]) > 0).astype(float)
    ev_s, ev_y = np.concatenate(dev_raw[half:]), (np.concatenate(dev.labels[half:]) > 0).astype(float)
    te_s, te_y = np.concatenate(test_raw), (np.concatenate(test.labels) > 0).astype(float)
    sig = lambda s: 1.0 / (1.0 + np.exp(-s))  # noqa: E731 - "raw": LambdaMART score through a sigmoid
    cals = {m: Calibrator(m).fit(cal_y, cal_s) for m in ("platt", "isotonic")}
    fig["ece"] = {
        "dev_raw_sigmoid": expected_calibration_error(ev_y, sig(ev_s)),
        **{f"dev_{m}": expected_calibration_error(ev_y, c.transform(ev_s)) for m, c in cals.items()},
        "test_raw_sigmoid": expected_calibration_error(te_y, sig(te_s)),
        **{f"test_{m}": expected_calibration_error(te_y, c.transform(te_s)) for m, c in cals.items()},
        "dev_pairs_fit": int(cal_y.shape[0]), "dev_pairs_eval": int(ev_y.shape[0]), "dev_positive_rate": float(ev_y.mean()),
    }  # fmt: skip
    cal = cals["platt"]
    # relevance gate: trained on the dev split's constructed set, evaluated on test's
    dev_lists, dev_y, _, dev_q = constructed_gate_set(sf, feats, rr, cal, dev, tag="dev")
    te_lists, te_y2, kinds, te_q = constructed_gate_set(sf, feats, rr, cal, test, tag="test")
    # the fine-tuned bi-encoder's cosine, a view the gate may read (fit claims only: out of sample here)
    from mlsys.rag.rerank import EmbedderReranker

    bi = EmbedderReranker(bi_encoder(sf, fit))
    dev_lists, te_lists = with_view(dev_lists, dev_q, bi), with_view(te_lists, te_q, bi)
    base = EmbedderReranker(sf.store.embedder)
    bi_scores = [bi.score(q, c) for q, c in zip(test.queries, test.cands)]
    base_scores = [base.score(q, c) for q, c in zip(test.queries, test.cands)]
    bi_res, base_res = evaluate_scores(test, bi_scores, metrics), evaluate_scores(test, base_scores, metrics)
    fig["bi_encoder"] = {
        "fine_tune": json.loads((Path(bi.embedder.model_path) / "report.json").read_text()),
        "dev_fine_tuned_cosine_ndcg@10": evaluate_scores(
            dev, [bi.score(q, c) for q, c in zip(dev.queries, dev.cands)], ["ndcg@10"]
        ).mean["ndcg@10"],
        "test_minilm_cosine_top100": dict(base_res.mean), "test_fine_tuned_cosine_top100": dict(bi_res.mean),
        "compare": str(compare(bi_res, base_res, "ndcg@10", n_resamples=10_000, seed=0)),
    }  # fmt: skip
    gate, grid = chosen_gate(sf, dev_lists, dev_y, dev_q)
    gate.save(out_dir / "gate.json")
    p = gate.predict_proba_features(gate.feature_matrix(te_lists, te_q))
    # every setting of the grid on test too (diagnostic only: the choice above saw only the dev lists)
    for row in grid:
        g = row.pop("make")().fit(dev_lists, dev_y, dev_q)
        row["test_auroc"] = float(
            roc_auc_score(te_y2, g.predict_proba_features(g.feature_matrix(te_lists, te_q)))
        )
    fig["gate_grid"] = grid
    top = np.array([lst[0].score for lst in te_lists])
    cov, thr = coverage_at_precision(te_y2, p, 0.9)
    rc_gate, rc_top = risk_coverage_curve(te_y2, p), risk_coverage_curve(te_y2, top)
    dec = [gate.decide(lst, q).decision for lst, q in zip(te_lists, te_q)]
    fig["gate"] = {
        "auroc": float(roc_auc_score(te_y2, p)),
        "auroc_top_calibrated_score_alone": float(roc_auc_score(te_y2, top)),
        "coverage_at_precision_0.9": cov, "threshold": thr,
        "aurc": rc_gate.aurc, "ece": expected_calibration_error(te_y2, p),
        "n": {k: kinds.count(k) for k in dict.fromkeys(kinds)}, "n_dev": {"answerable": int(dev_y.sum()), "unanswerable": int((1 - dev_y).sum())},
        "thresholds": {"answer": gate.answer_threshold_, "abstain": gate.abstain_threshold_},
        "chosen": {"retrievers": list(gate.retrievers), "lexical": gate.lexical is not None, "C": gate.C},
        "decisions": {d: dec.count(d) for d in ("answer", "ambiguous", "abstain")},
        "precision_of_answer_decisions": float(np.mean([y for y, d in zip(te_y2, dec) if d == "answer"])) if "answer" in dec else None,
        "auroc_by_kind": {k: float(roc_auc_score(np.r_[te_y2[te_y2 == 1], te_y2[[kk == k for kk in kinds]]],
                                                 np.r_[p[te_y2 == 1], p[[kk == k for kk in kinds]]]))
                          for k in ("other claim's set", "qrels removed")},
    }  # fmt: skip
    risk_coverage_plot(
        {"relevance gate": rc_gate, "top calibrated score alone": rc_top}, out_dir / "risk_coverage.png"
    )
    # fine-tuned cross-encoder on the hybrid's top ce_top_n
    latest = cache_dir() / "cross-encoder-latest.txt"
    if latest.is_file():
        import time as _t

        from mlsys.rag.rerank import CrossEncoderReranker

        ce_dir = Path(latest.read_text().strip())
        ce = CrossEncoderReranker(ce_dir, max_length=128, batch_size=32, num_threads=2, top_n=ce_top_n)
        t0 = _t.perf_counter()
        ce_scores = []
        ce_key = sha([str(ce_dir), (ce_dir / "model.safetensors").stat().st_mtime_ns, test.queries,
                      [[h.id for h in c[:ce_top_n]] for c in test.cands], 128])  # fmt: skip
        ce_path = cache_dir() / f"ce-scores-{ce_key}.npz"
        cached_ce = dict(np.load(ce_path, allow_pickle=False)) if ce_path.is_file() else None
        fresh: dict[str, np.ndarray] = {}
        for qi, (q, c) in enumerate(zip(test.queries, test.cands)):
            s = cached_ce[str(qi)] if cached_ce is not None else ce.score(q, c[:ce_top_n])
            fresh[str(qi)] = s
            # the top ce_top_n re-ordered by the cross-encoder, the rest below in hybrid order
            ce_scores.append(
                np.r_[
                    s - s.min() + len(c) + 1.0 if s.size else s, -np.arange(len(c) - s.size, dtype=np.float64)
                ]
            )
        sec = _t.perf_counter() - t0
        if cached_ce is None:
            np.savez(ce_path, **fresh)
        else:
            sec = float(
                json.loads((cache_dir() / "rerank_figures.json").read_text())["cross_encoder"][
                    "seconds_per_query"
                ]
            ) * len(test.ids)
        ce_res = evaluate_scores(test, ce_scores, metrics)
        rep = json.loads((ce_dir / "report.json").read_text()) if (ce_dir / "report.json").is_file() else {}
        fig["cross_encoder"] = {"top_n": ce_top_n, "test": dict(ce_res.mean), "fine_tune": rep,
                                "seconds_per_query": sec / len(test.ids), "compare_vs_hybrid": str(compare(ce_res, hyb, "ndcg@10", seed=0))}  # fmt: skip
    fig["load_end"] = os.getloadavg()[0]
    (out_dir / "rerank_figures.json").write_text(json.dumps(fig, indent=2, default=str))
    return fig


if __name__ == "__main__":
    sys.exit(main())
