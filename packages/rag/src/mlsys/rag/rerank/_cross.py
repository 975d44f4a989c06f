"""Cross-encoder re-ranking over sentence-transformers' ``CrossEncoder``, and fine-tuning one offline.

A cross-encoder reads query and passage together, so it sees what a bi-encoder cannot (negation,
which entity a number belongs to). No pretrained cross-encoder ships offline here, so
:func:`fine_tune_cross_encoder` starts from the offline all-MiniLM-L6-v2 encoder (a fresh linear
head on its ``[CLS]`` token) and trains it with binary cross-entropy on the training queries'
relevant passages and *hard negatives* mined with the store's own retrievers
(:func:`mine_hard_negatives`: the best-ranked passages that are not relevant), within a
wall-clock budget. It writes a directory :class:`CrossEncoderReranker` loads.

Truncation: a (query, passage) pair longer than ``max_length`` tokens is cut by the tokenizer's
``longest_first`` strategy (the longer of the two loses tokens first, one at a time, until the
pair fits), as sentence-transformers does; nothing is raised. Scores are raw logits: wrap the
re-ranker's scores with a :class:`~mlsys.rag.rerank.Calibrator` to get probabilities.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common.errors import CorruptFileError, DatasetNotFoundError, InvalidInputError
from mlsys.common.validation import check_k
from mlsys.rag._embedders import check_texts, offline_sentence_transformers
from mlsys.rag._retrievers import Hit, Retriever
from mlsys.rag.rerank._protocol import F32, BaseReranker

__all__ = [
    "CrossEncoderReranker",
    "FineTuneReport",
    "check_cross_encoder_dir",
    "fine_tune_cross_encoder",
    "mine_hard_negatives",
]

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


def check_cross_encoder_dir(path: str | os.PathLike[str]) -> Path:
    """Verify that a folder holds a loadable sequence-classification (cross-encoder) model.

    Needs ``config.json`` naming a ``*ForSequenceClassification`` architecture, weights as
    ``model.safetensors`` (pickled ``pytorch_model.bin`` weights are refused: loading them could
    execute code) and a tokenizer (``tokenizer.json`` or ``vocab.txt``).

    Raises:
        DatasetNotFoundError: the folder does not exist.
        CorruptFileError: a file is missing or unreadable, or the model is not a cross-encoder
            (e.g. a bi-encoder such as all-MiniLM-L6-v2 itself, architecture ``BertModel``).

    Example:
        >>> check_cross_encoder_dir("/nonexistent")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.DatasetNotFoundError: cross-encoder folder /nonexistent does not exist; ...
    """
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    d = Path(path)
    if not d.is_dir():
        raise DatasetNotFoundError(
            f"cross-encoder folder {d} does not exist; expected a folder written by fine_tune_cross_encoder "
            "or CrossEncoder.save_pretrained"
        )
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise CorruptFileError(f"{d}: no config.json; expected a Hugging Face model folder")
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{cfg_path}: unreadable ({exc})") from exc
    archs = cfg.get("architectures") if isinstance(cfg, dict) else None
    if not isinstance(archs, list) or not any(
        isinstance(a, str) and a.endswith("ForSequenceClassification") for a in archs
    ):
        raise CorruptFileError(
            f"{d} is not a cross-encoder: architectures {archs!r}; expected a *ForSequenceClassification "
            "model (a bi-encoder folder cannot score pairs; fine-tune one with fine_tune_cross_encoder)"
        )
    if not (d / "model.safetensors").is_file():
        extra = (
            " (pytorch_model.bin is refused: pickled weights can execute code)"
            if (d / "pytorch_model.bin").exists()
            else ""
        )
        raise CorruptFileError(f"{d}: no model.safetensors{extra}")
    if not any((d / f).is_file() for f in _TOKENIZER_FILES):
        raise CorruptFileError(f"{d}: no tokenizer (expected one of {_TOKENIZER_FILES})")
    return d


def _load_cross_encoder(path: Path, *, max_length: int, device: str, num_labels: int | None = None) -> Any:
    st = offline_sentence_transformers()
    try:
        kwargs: dict[str, Any] = {"max_length": max_length, "device": device, "local_files_only": True}
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        return st.CrossEncoder(str(path), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CorruptFileError(
            f"{path}: could not load the cross-encoder ({type(exc).__name__}: {exc})"
        ) from exc


class CrossEncoderReranker(BaseReranker):
    """Score (query, passage) pairs with a local cross-encoder folder (``CrossEncoder``).

    Args:
        model_path: a folder accepted by :func:`check_cross_encoder_dir`.
        max_length: tokens per pair; longer pairs are truncated (``longest_first``, see the module).
        batch_size: pairs per forward pass.
        device: torch device.
        num_threads: ``torch.set_num_threads`` before scoring, if given.
        top_n: candidates scored per query (the rest keep their order below), the latency cut.
        name: provenance label.

    Example:
        >>> rr = CrossEncoderReranker("/models/my-cross-encoder", top_n=20)  # doctest: +SKIP
        >>> rr.rerank("is aspirin an anticoagulant?", hits, top_k=5)  # doctest: +SKIP
    """

    name = "cross-encoder"

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        *,
        max_length: int = 256,
        batch_size: int = 32,
        device: str = "cpu",
        num_threads: int | None = None,
        top_n: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(top_n=top_n, name=name)
        self.model_path = check_cross_encoder_dir(model_path)
        self.max_length = check_k(max_length, name="max_length", limit=None)
        self.batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
        if num_threads is not None:
            check_k(num_threads, name="num_threads", limit=None)
        self.num_threads = num_threads
        self.device = device
        self.model = _load_cross_encoder(self.model_path, max_length=self.max_length, device=device)
        if int(getattr(self.model, "num_labels", 1)) != 1:
            raise CorruptFileError(
                f"{self.model_path}: {self.model.num_labels} output labels; expected a 1-logit relevance model"
            )

    def __repr__(self) -> str:
        return f"CrossEncoderReranker({str(self.model_path)!r}, max_length={self.max_length}, top_n={self.top_n})"

    def score_pairs(self, queries: Sequence[str], passages: Sequence[str]) -> F32:
        """Raw logits of aligned (query, passage) pairs."""
        qs = check_texts(queries, what="queries", allow_blank=False, query=True)
        ps = check_texts(passages, what="passages")
        if len(qs) != len(ps):
            raise InvalidInputError(f"got {len(qs)} queries and {len(ps)} passages; expected aligned pairs")
        if not qs:
            return np.zeros(0, np.float32)
        import torch

        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        out = self.model.predict(
            list(zip(qs, ps)),
            batch_size=self.batch_size,
            show_progress_bar=False,
            activation_fn=torch.nn.Identity(),
            convert_to_numpy=True,
        )
        return np.asarray(out, dtype=np.float32).reshape(-1)

    def _score_batch(self, queries: list[str], candidates: list[list[Hit]]) -> list[F32]:
        qs = [q for q, c in zip(queries, candidates) for _ in c]
        ps = [h.text or "" for c in candidates for h in c]
        flat = self.score_pairs(qs, ps)
        out, pos = [], 0
        for c in candidates:
            out.append(flat[pos : pos + len(c)])
            pos += len(c)
        return out


def mine_hard_negatives(
    retriever: Retriever,
    queries: Mapping[str, str],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    n_negatives: int = 4,
    depth: int = 30,
    skip_top: int = 0,
) -> list[tuple[str, str, float]]:
    """``(query, passage, label)`` training pairs: every relevant passage retrieved within ``depth``
    (label 1) and the ``n_negatives`` best-ranked non-relevant ones after ``skip_top`` (label 0).

    Hard negatives come from the store's own retriever: the passages it confuses with the answer.
    Queries without a relevant passage in the top ``depth`` contribute nothing (no label noise
    from unseen positives).

    Example:
        >>> from mlsys.rag import DocumentStore, HashingEmbedder
        >>> store = DocumentStore(HashingEmbedder(dim=32))
        >>> _ = store.upsert({"a": "red apples", "b": "red cars", "c": "blue sky"})
        >>> mine_hard_negatives(store.bm25_retriever(), {"q": "red apples"}, {"q": {"a": 1}}, n_negatives=1)
        [('red apples', 'red apples', 1.0), ('red apples', 'red cars', 0.0)]
    """
    n_negatives = check_k(n_negatives, name="n_negatives", limit=None)
    depth = check_k(depth, name="depth")
    qids = [q for q in queries if q in qrels]
    out: list[tuple[str, str, float]] = []
    if not qids:
        return out
    results = retriever.retrieve([queries[q] for q in qids], depth)
    for qid, res in zip(qids, results):
        rel = {d for d, r in qrels[qid].items() if r > 0}
        pos = [h for h in res.hits if h.doc_id in rel and h.text]
        if not pos:
            continue
        neg = [h for h in res.hits[skip_top:] if h.doc_id not in rel and h.text][:n_negatives]
        q = queries[qid]
        out += [(q, h.text or "", 1.0) for h in pos] + [(q, h.text or "", 0.0) for h in neg]
    return out


@dataclass(frozen=True)
class FineTuneReport(TabularDisplay):
    """What :func:`fine_tune_cross_encoder` or :func:`~mlsys.rag.rerank.fine_tune_bi_encoder` did.

    Args:
        path: the written model folder.
        steps, pairs_seen, epochs_completed: optimisation steps, pairs consumed, full passes.
        seconds: wall-clock training time.
        stopped_by_budget: whether the time budget ended training before ``epochs``.
        mean_loss_last: mean training loss over the last 50 steps (BCE for a cross-encoder,
            the in-batch softmax cross-entropy for a bi-encoder).
    """

    path: Path
    steps: int
    pairs_seen: int
    epochs_completed: float
    seconds: float
    stopped_by_budget: bool
    mean_loss_last: float

    _pandas_extra = "mlsys-rag[pandas]"

    def _display_table(self) -> DisplayTable:
        cols = ("steps", "pairs_seen", "epochs_completed", "seconds", "stopped_by_budget", "mean_loss_last")
        return DisplayTable(
            "FineTuneReport",
            cols,
            (tuple(getattr(self, c) for c in cols),),
            details=(("path", str(self.path)),),
        )


def fine_tune_cross_encoder(
    base_model: str | os.PathLike[str],
    pairs: Sequence[tuple[str, str, float]],
    out_dir: str | os.PathLike[str],
    *,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 3e-5,
    warmup_fraction: float = 0.1,
    max_length: int = 256,
    time_budget_s: float | None = None,
    seed: int = 0,
    num_threads: int | None = None,
    progress: bool = False,
) -> FineTuneReport:
    """Fine-tune a 1-logit cross-encoder from an encoder folder on labelled (query, passage) pairs.

    ``base_model`` may be a bi-encoder folder (all-MiniLM-L6-v2: sentence-transformers converts it,
    adding a freshly initialised classification head) or an existing cross-encoder. Training is
    BCE-with-logits, AdamW with linear warm-up and decay, seeded shuffling; it stops after
    ``epochs`` or when ``time_budget_s`` is spent (checked after every step) and writes the model
    (safetensors) to ``out_dir``.

    Example:
        >>> pairs = mine_hard_negatives(store.hybrid_retriever(), train_queries, train_qrels)  # doctest: +SKIP
        >>> fine_tune_cross_encoder(minilm_model_path(), pairs, "ce-out", time_budget_s=600)  # doctest: +SKIP
    """
    import torch

    data = check_pairs(pairs)
    base = _check_training_args(base_model, epochs, batch_size, time_budget_s, num_threads)
    torch.manual_seed(seed)
    ce = _load_cross_encoder(base, max_length=max_length, device="cpu", num_labels=1)
    model, tok = ce.model, ce.tokenizer
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def batch_loss(batch: list[tuple[str, str, float]]) -> Any:
        enc = tok([b[0] for b in batch], [b[1] for b in batch], padding=True, truncation="longest_first",
                  max_length=max_length, return_tensors="pt")  # fmt: skip
        logits = model(**enc).logits.view(-1)
        return loss_fn(logits, torch.tensor([b[2] for b in batch], dtype=torch.float32))

    run = train_loop(model, data, batch_loss, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                     warmup_fraction=warmup_fraction, time_budget_s=time_budget_s, seed=seed,
                     progress="fine-tune cross-encoder" if progress else None)  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ce.save_pretrained(str(out))
    check_cross_encoder_dir(out)
    return run.report(out)


def check_pairs(pairs: Sequence[tuple[str, str, float]]) -> list[tuple[str, str, float]]:
    """Validate ``(query, passage, label in [0, 1])`` training pairs (a non-empty list)."""
    data = list(pairs)
    if not data:
        raise InvalidInputError("no training pairs; expected (query, passage, label) triples")
    for i, p in enumerate(data):
        if (
            not isinstance(p, tuple) or len(p) != 3 or not isinstance(p[0], str) or not isinstance(p[1], str)
            or not isinstance(p[2], (int, float)) or not 0.0 <= float(p[2]) <= 1.0
        ):  # fmt: skip
            raise InvalidInputError(
                f"pairs[{i}] must be (query: str, passage: str, label in [0, 1]), got {p!r:.80}"
            )
    return data


def _check_training_args(
    base_model: str | os.PathLike[str],
    epochs: int,
    batch_size: int,
    time_budget_s: float | None,
    num_threads: int | None,
) -> Path:
    """Shared argument checks of the fine-tuning functions; sets torch's thread count."""
    import torch

    check_k(epochs, name="epochs", limit=None)
    check_k(batch_size, name="batch_size", limit="max_batch")
    if time_budget_s is not None and not (isinstance(time_budget_s, (int, float)) and time_budget_s > 0):
        raise InvalidInputError(f"time_budget_s must be a positive number or None, got {time_budget_s!r}")
    base = Path(base_model)
    if not (base / "config.json").is_file():
        raise DatasetNotFoundError(
            f"{base}: no config.json; expected a Hugging Face / sentence-transformers model folder"
        )
    if num_threads is not None:
        torch.set_num_threads(check_k(num_threads, name="num_threads", limit=None))
    return base


@dataclass
class _Run:
    steps: int
    seen: int
    n: int
    seconds: float
    stopped: bool
    losses: list[float]

    def report(self, path: Path) -> FineTuneReport:
        return FineTuneReport(
            path, self.steps, self.seen, self.seen / self.n, self.seconds, self.stopped,
            float(np.mean(self.losses[-50:])),
        )  # fmt: skip


def train_loop(
    model: Any,
    data: Sequence[Any],
    batch_loss: Any,
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    warmup_fraction: float,
    time_budget_s: float | None,
    seed: int,
    progress: str | None,
) -> _Run:
    """AdamW (weight decay 0.01, gradient norm clipped at 1) with linear warm-up and decay over
    seeded shuffled batches of ``data``; ``batch_loss(batch)`` returns the loss tensor. Stops after
    ``epochs`` or once ``time_budget_s`` is spent (checked after every step); leaves ``model`` in
    eval mode."""
    import torch

    model.train()
    rng = np.random.default_rng(seed)
    total = (len(data) + batch_size - 1) // batch_size * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    warm = max(1, int(warmup_fraction * total))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))
    )
    t0 = time.perf_counter()
    run = _Run(0, 0, len(data), 0.0, False, [])
    bar = None
    if progress is not None:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=progress, unit="step")
    for _ in range(epochs):
        order = rng.permutation(len(data))
        for s in range(0, len(data), batch_size):
            batch = [data[j] for j in order[s : s + batch_size]]
            loss = batch_loss(batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            run.losses.append(float(loss.detach()))
            run.steps += 1
            run.seen += len(batch)
            if bar is not None:
                bar.update(1)
            if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
                run.stopped = run.steps < total
                break
        if run.stopped:
            break
    if bar is not None:
        bar.close()
    run.seconds = time.perf_counter() - t0
    model.eval()
    return run
