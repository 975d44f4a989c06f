"""The re-ranker contract: ``rerank(query, candidates, top_k)`` and its batch form.

Candidates are the :class:`~mlsys.rag.Hit` records a retriever returns (text and provenance
included). A re-ranker returns new ``Hit`` records, best first, with ``rank`` renumbered from 1,
``score`` replaced by its own score, and its ``(rank, score)`` added to ``provenance`` under its
name, so later stages (the relevance gate, the answer pipeline) can still read every retriever's
view of each hit.

Every re-ranker scores only the first ``top_n`` candidates it is given (the latency budget cut,
see :func:`choose_top_n`); the others keep their incoming order below the re-ranked ones, with
score ``-inf``. An empty candidate list gives an empty result (documented behaviour, not an
error: "nothing retrieved" is for the relevance gate to turn into an abstention).
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import check_k
from mlsys.rag._embedders import check_texts
from mlsys.rag._retrievers import Hit

__all__ = ["BaseReranker", "RerankChain", "Reranker", "TopNChoice", "check_candidates", "choose_top_n"]

F32 = npt.NDArray[np.float32]


@runtime_checkable
class Reranker(Protocol):
    """What every re-ranker provides.

    Example:
        >>> from mlsys.rag.rerank import LexicalReranker
        >>> isinstance(LexicalReranker(), Reranker)
        True
    """

    name: str

    def rerank(self, query: str, candidates: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
        """The candidates re-scored, best first (at most ``top_k``)."""
        ...

    def rerank_batch(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], top_k: int | None = None
    ) -> list[list[Hit]]:
        """:meth:`rerank` for several queries."""
        ...


class RerankChain:
    """Re-rankers applied one after another; the last one's order and scores are the result.

    Each stage keeps the provenance of the stages before it, so a cheap view computed first
    (e.g. an :class:`~mlsys.rag.rerank.EmbedderReranker`'s cosine) stays readable by the relevance
    gate after the final re-ranker. Only the last stage cuts to ``top_k``.

    Args:
        stages: two or more re-rankers (``rerank_batch``).
        name: provenance name of the chain (default: the last stage's).

    Example:
        >>> from mlsys.rag import HashingEmbedder
        >>> from mlsys.rag.rerank import EmbedderReranker, LexicalReranker
        >>> chain = RerankChain([EmbedderReranker(HashingEmbedder(dim=64), name="cos"), LexicalReranker()])
        >>> hits = [Hit(1, 1, 0.0, text="blue sky"), Hit(2, 2, 0.0, text="red apples")]
        >>> [(h.id, sorted(h.provenance)) for h in chain.rerank("red apples", hits, top_k=1)]
        [(2, ['cos', 'lexical'])]
    """

    def __init__(self, stages: Sequence[Any], *, name: str | None = None) -> None:
        st = list(stages) if isinstance(stages, Sequence) and not isinstance(stages, (str, bytes)) else None
        if st is None or len(st) < 2:
            raise InvalidInputError(
                f"stages must be a sequence of two or more re-rankers, got {stages!r:.80}"
            )
        for i, s in enumerate(st):
            if not callable(getattr(s, "rerank_batch", None)):
                raise InvalidInputError(f"stages[{i}] has no rerank_batch, got {type(s).__name__}")
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidInputError(f"name must be a non-empty string, got {name!r}")
        self.stages = st
        self.name: str = name or str(getattr(st[-1], "name", "chain"))

    def __repr__(self) -> str:
        return f"RerankChain({self.stages!r})"

    def rerank(self, query: str, candidates: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
        """The candidates through every stage, best first (at most ``top_k``)."""
        return self.rerank_batch([query], [candidates], top_k)[0]

    def rerank_batch(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], top_k: int | None = None
    ) -> list[list[Hit]]:
        """:meth:`rerank` for several queries."""
        lists: Sequence[Sequence[Hit]] = candidates
        for s in self.stages[:-1]:
            lists = s.rerank_batch(queries, lists, None)
        return list(self.stages[-1].rerank_batch(queries, lists, top_k))


def check_candidates(candidates: Any, *, what: str = "candidates", need_text: bool = True) -> list[Hit]:
    """Validate one query's candidate list at a public boundary.

    Refuses a non-sequence, items that are not :class:`~mlsys.rag.Hit`, hits without text when
    ``need_text`` (a retriever without a catalog returns bare ids) and duplicated ids.

    Example:
        >>> check_candidates([Hit(1, 1, 0.5, text="a")])[0].id
        1
        >>> check_candidates([Hit(1, 1, 0.5)])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.InvalidInputError: candidates[0] (id 1) has no text; ...
    """
    if isinstance(candidates, (str, bytes, Hit)) or not isinstance(candidates, Sequence):
        raise InvalidInputError(f"{what} must be a sequence of Hit records, got {type(candidates).__name__}")
    out = list(candidates)
    seen: set[int] = set()
    for i, h in enumerate(out):
        if not isinstance(h, Hit):
            raise InvalidInputError(f"{what}[{i}] is {type(h).__name__}, expected a mlsys.rag.Hit")
        if need_text and not isinstance(h.text, str):
            raise InvalidInputError(
                f"{what}[{i}] (id {h.id}) has no text; expected hits from a retriever with a catalog "
                "(e.g. DocumentStore.hybrid_retriever())"
            )
        if h.id in seen:
            raise InvalidInputError(f"{what}[{i}]: id {h.id} appears twice; expected distinct candidates")
        seen.add(h.id)
    return out


class BaseReranker(ABC):
    """Shared validation, ``top_n`` cut, ordering and provenance for re-rankers.

    Subclasses implement :meth:`_score_batch` (validated queries and candidate lists, each already
    cut to ``top_n``, in; one float array of scores per list out, higher is better).

    Args:
        top_n: how many leading candidates are scored (the rest keep their order below them);
            ``None`` scores all.
        name: provenance label.
    """

    name: str = "reranker"

    def __init__(self, *, top_n: int | None = None, name: str | None = None) -> None:
        self.top_n = None if top_n is None else check_k(top_n, name="top_n")
        if name is not None:
            if not isinstance(name, str) or not name:
                raise InvalidInputError(f"name must be a non-empty str, got {name!r}")
            self.name = name

    @abstractmethod
    def _score_batch(self, queries: list[str], candidates: list[list[Hit]]) -> list[F32]:
        """Scores of each (query, candidate list), same lengths as the lists."""

    def score(self, query: str, candidates: Sequence[Hit]) -> F32:
        """Scores of the candidates in their given order (no ``top_n`` cut, no sorting).

        Example:
            >>> from mlsys.rag.rerank import LexicalReranker
            >>> LexicalReranker().score("red apples", [Hit(1, 1, 0.0, text="red apples"),
            ...                                        Hit(2, 2, 0.0, text="blue sky")]).tolist()
            [1.0, 0.0]
        """
        q = check_texts([query], what="query", allow_blank=False, query=True)
        cands = check_candidates(candidates)
        if not cands:
            return np.zeros(0, np.float32)
        return np.asarray(self._score_batch(q, [cands])[0], dtype=np.float32)

    def rerank(self, query: str, candidates: Sequence[Hit], top_k: int | None = None) -> list[Hit]:
        """Re-score the candidates and return them best first (at most ``top_k``)."""
        return self.rerank_batch([query], [candidates], top_k)[0]

    def rerank_batch(
        self, queries: Sequence[str], candidates: Sequence[Sequence[Hit]], top_k: int | None = None
    ) -> list[list[Hit]]:
        """Re-rank several queries' candidate lists (one list per query)."""
        qs = check_texts(queries, what="queries", allow_blank=False, query=True)
        if isinstance(candidates, (str, bytes)) or not isinstance(candidates, Sequence):
            raise InvalidInputError(
                f"candidates must be one sequence of Hit records per query, got {type(candidates).__name__}"
            )
        if len(candidates) != len(qs):
            raise InvalidInputError(
                f"got {len(candidates)} candidate lists for {len(qs)} queries; expected one list per query"
            )
        lists = [check_candidates(c, what=f"candidates[{i}]") for i, c in enumerate(candidates)]
        k = None if top_k is None else check_k(top_k, name="top_k")
        cut = [c[: self.top_n] if self.top_n is not None else c for c in lists]
        todo = [i for i, c in enumerate(cut) if c]
        scores: dict[int, F32] = {}
        if todo:
            got = self._score_batch([qs[i] for i in todo], [cut[i] for i in todo])
            for i, s in zip(todo, got):
                s = np.asarray(s, dtype=np.float32)
                if s.shape != (len(cut[i]),):
                    raise InvalidInputError(
                        f"{type(self).__name__} returned {s.shape} scores for {len(cut[i])} candidates"
                    )
                scores[i] = s
        return [self._order(lists[i], scores.get(i, np.zeros(0, np.float32)), k) for i in range(len(qs))]

    def _order(self, cands: list[Hit], scores: F32, top_k: int | None) -> list[Hit]:
        n = scores.shape[0]
        # stable: equal scores keep the incoming (retriever) order
        order = np.argsort(-scores.astype(np.float64), kind="stable").tolist() + list(range(n, len(cands)))
        if top_k is not None:
            order = order[:top_k]
        out = []
        for new_rank, j in enumerate(order, start=1):
            h = cands[j]
            sc = float(scores[j]) if j < n else float("-inf")
            prov = dict(h.provenance)
            prov[self.name] = (new_rank, sc)
            out.append(dataclasses.replace(h, rank=new_rank, score=sc, provenance=prov))
        return out


@dataclass(frozen=True)
class TopNChoice:
    """Result of :func:`choose_top_n`: the largest ``top_n`` whose latency quantile fits the budget.

    Args:
        top_n: the chosen cut (the smallest tried when none fits; ``fits`` says so).
        fits: whether the chosen cut's measured quantile is within the budget.
        budget_ms, quantile: the budget and the latency quantile it bounds (0.95 = p95).
        latency_ms: ``{top_n: measured quantile in ms}`` for every cut tried.
    """

    top_n: int
    fits: bool
    budget_ms: float
    quantile: float
    latency_ms: dict[int, float]


def choose_top_n(
    reranker: BaseReranker,
    queries: Sequence[str],
    candidates: Sequence[Sequence[Hit]],
    *,
    budget_ms: float,
    grid: Sequence[int] = (10, 20, 50, 100),
    quantile: float = 0.95,
    clock: Callable[[], float] = time.perf_counter,
) -> TopNChoice:
    """Pick the re-ranking depth that keeps the stage's per-query latency quantile inside a budget.

    Each cut in ``grid`` is timed on every sample query (one :meth:`~BaseReranker.rerank` call
    per query, after one warm-up call); the largest cut whose ``quantile`` latency is at most
    ``budget_ms`` wins. The re-ranker's ``top_n`` is restored afterwards; set it to the choice.

    Example:
        >>> from mlsys.rag.rerank import LexicalReranker
        >>> ticks = iter(range(10**6))
        >>> choice = choose_top_n(LexicalReranker(), ["a b"], [[Hit(1, 1, 0.0, text="a")]],
        ...                       budget_ms=2000, grid=(1, 2), clock=lambda: next(ticks))
        >>> choice.top_n, choice.fits
        (2, True)
    """
    if not isinstance(budget_ms, (int, float)) or isinstance(budget_ms, bool) or not budget_ms > 0:
        raise InvalidInputError(f"budget_ms must be a positive number, got {budget_ms!r}")
    if not isinstance(quantile, float) or not 0.0 < quantile <= 1.0:
        raise InvalidInputError(f"quantile must be a float in (0, 1], got {quantile!r}")
    cuts = sorted({check_k(n, name="grid entry") for n in grid})
    if not cuts:
        raise InvalidInputError("grid must hold at least one top_n")
    qs = check_texts(queries, what="queries", allow_blank=False, query=True)
    if not qs or len(candidates) != len(qs):
        raise InvalidInputError(
            f"need one candidate list per sample query, got {len(candidates)} lists for {len(qs)} queries"
        )
    saved = reranker.top_n
    measured: dict[int, float] = {}
    try:
        for n in cuts:
            reranker.top_n = n
            reranker.rerank(qs[0], candidates[0])
            times = []
            for q, c in zip(qs, candidates):
                t0 = clock()
                reranker.rerank(q, c)
                times.append((clock() - t0) * 1000.0)
            measured[n] = float(np.quantile(np.asarray(times), quantile))
    finally:
        reranker.top_n = saved
    ok = [n for n in cuts if measured[n] <= budget_ms]
    return TopNChoice(max(ok) if ok else cuts[0], bool(ok), float(budget_ms), quantile, measured)
