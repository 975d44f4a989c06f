"""Evaluation layer 2: faithfulness of an answer to its contexts, judged claim by claim.

A :class:`Judge` splits an answer into claims and says, for each, whether the contexts support
it; the score is ``supported / claims``. An answer with no checkable claim gets the explicit
status ``"no_claims"`` and no score (never NaN). :func:`judge_records` runs a judge over many
records and never stops on a bad judge: an exception or a malformed return becomes a verdict
with status ``"failed"`` and the error text, and the evaluation continues.

:class:`OfflineJudge` is deterministic and dependency-free (for CI): a claim is supported when
it occurs verbatim in a context, or when one context holds at least ``min_term_recall`` of its
analysed content terms. :class:`LLMJudge` is the adapter shape for a model judge: a
``complete(prompt) -> str`` callable whose reply must be JSON
``{"claims": [{"claim": str, "supported": bool}, ...]}``; anything else is a judge failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from mlsys.common.errors import InvalidInputError, ParseError
from mlsys.rag._bm25 import ENGLISH_STOPWORDS, Analyzer, AnalyzerConfig
from mlsys.rag._chunkers import sentence_spans

__all__ = [
    "ClaimVerdict",
    "FaithfulnessVerdict",
    "Judge",
    "LLMJudge",
    "OfflineJudge",
    "judge_records",
]

Status = Literal["scored", "no_claims", "failed", "abstained"]


@dataclass(frozen=True)
class ClaimVerdict:
    """One claim and whether the contexts support it (``evidence``: index of the supporting context)."""

    claim: str
    supported: bool
    evidence: int | None = None


@dataclass(frozen=True)
class FaithfulnessVerdict:
    """A judge's verdict on one answer.

    Args:
        status: ``"scored"``; ``"no_claims"`` (nothing checkable, score ``None``); ``"failed"``
            (the judge raised or returned garbage; ``error`` says what); ``"abstained"`` (the
            system gave no answer, nothing to judge).
        claims: per-claim verdicts (empty unless scored).
        score: ``supported / len(claims)`` when scored, else ``None``.
        judge: the judge's name; error: the failure, if any.

    Example:
        >>> FaithfulnessVerdict.from_claims((ClaimVerdict("a", True), ClaimVerdict("b", False)), "x").score
        0.5
        >>> FaithfulnessVerdict.from_claims((), "x").status
        'no_claims'
    """

    status: Status
    claims: tuple[ClaimVerdict, ...]
    score: float | None
    judge: str
    error: str | None = None

    @classmethod
    def from_claims(cls, claims: Sequence[ClaimVerdict], judge: str) -> FaithfulnessVerdict:
        """A scored verdict, or ``"no_claims"`` when ``claims`` is empty."""
        cs = tuple(claims)
        if not cs:
            return cls("no_claims", (), None, judge)
        return cls("scored", cs, sum(c.supported for c in cs) / len(cs), judge)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "status": self.status,
            "score": self.score,
            "judge": self.judge,
            "error": self.error,
            "claims": [
                {"claim": c.claim, "supported": c.supported, "evidence": c.evidence} for c in self.claims
            ],
        }


@runtime_checkable
class Judge(Protocol):
    """What every faithfulness judge provides."""

    name: str

    def judge(self, answer: str, contexts: Sequence[str]) -> FaithfulnessVerdict:
        """The verdict on ``answer`` given the ``contexts`` it was generated from."""
        ...


_SPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
#: words that carry no checkable content on their own ("Yes.", "I don't know.")
FILLER_WORDS = frozenset(
    "yes no ok okay sure thanks thank hello hi maybe perhaps unknown unclear know don t i you we".split()
)


_STOP = frozenset(ENGLISH_STOPWORDS)


def _norm(text: str) -> str:
    return _SPACE.sub(" ", text).strip().lower()


class OfflineJudge:
    """Deterministic lexical judge for CI.

    Claims are the answer's sentences that contain at least one content word (stop words, filler
    such as "yes" or "I don't know" and punctuation alone are not a claim: "Yes." has none). A claim is supported if it appears
    verbatim (whitespace- and case-normalised) in a context, or if a single context contains at
    least ``min_term_recall`` of its distinct analysed terms.

    Args:
        min_term_recall: share of a claim's terms one context must hold.
        analyzer: term analysis (default: the BM25 default, stemmed).

    Example:
        >>> j = OfflineJudge()
        >>> v = j.judge("Aspirin thins blood. The moon is cheese.", ["Aspirin thins the blood of patients."])
        >>> v.status, v.score, [c.supported for c in v.claims]
        ('scored', 0.5, [True, False])
        >>> j.judge("Yes.", ["anything"]).status
        'no_claims'
    """

    name = "offline-lexical"

    def __init__(self, *, min_term_recall: float = 0.8, analyzer: AnalyzerConfig | None = None) -> None:
        if not isinstance(min_term_recall, float) or not 0.0 < min_term_recall <= 1.0:
            raise InvalidInputError(f"min_term_recall must be a float in (0, 1], got {min_term_recall!r}")
        self.min_term_recall = min_term_recall
        self.analyzer = Analyzer(analyzer or AnalyzerConfig())

    def __repr__(self) -> str:
        return f"OfflineJudge(min_term_recall={self.min_term_recall})"

    def claims(self, answer: str) -> list[str]:
        """The checkable claims of an answer."""
        out = []
        for a, b in sentence_spans(answer):
            s = answer[a:b].strip()
            words = [w for w in _WORD.findall(s.lower()) if w not in FILLER_WORDS and w not in _STOP]
            if words and self.analyzer.terms(s):
                out.append(s)
        return out

    def judge(self, answer: str, contexts: Sequence[str]) -> FaithfulnessVerdict:
        """Verdict on ``answer``; raises :class:`InvalidInputError` for non-string input."""
        if not isinstance(answer, str):
            raise InvalidInputError(f"answer must be a str, got {type(answer).__name__}")
        if isinstance(contexts, str) or not all(isinstance(c, str) for c in contexts):
            raise InvalidInputError("contexts must be a sequence of strings")
        normed = [_norm(c) for c in contexts]
        term_sets = [set(self.analyzer.terms(c)) for c in contexts]
        verdicts = []
        for claim in self.claims(answer):
            nc = _norm(claim)
            hit = next((i for i, c in enumerate(normed) if nc in c), None)
            if hit is None:
                terms = set(self.analyzer.terms(claim))
                best, best_i = 0.0, None
                for i, ts in enumerate(term_sets):
                    r = len(terms & ts) / len(terms)
                    if r > best:
                        best, best_i = r, i
                if best >= self.min_term_recall:
                    hit = best_i
            verdicts.append(ClaimVerdict(claim, hit is not None, hit))
        return FaithfulnessVerdict.from_claims(verdicts, self.name)


JUDGE_PROMPT = (
    "Split the ANSWER into atomic factual claims. For each claim decide whether the CONTEXTS support it. "
    'Reply with JSON only: {{"claims": [{{"claim": "...", "supported": true}}]}}. '
    "An answer without factual claims gets an empty list.\n\nCONTEXTS:\n{contexts}\n\nANSWER:\n{answer}\n"
)


class LLMJudge:
    """Adapter for a model judge: ``complete(prompt) -> str`` replying with claims as JSON.

    Raises :class:`~mlsys.common.errors.ParseError` on a reply that is not the expected JSON
    (:func:`judge_records` records it as a judge failure and continues).

    Example:
        >>> j = LLMJudge(lambda p: '{"claims": [{"claim": "x", "supported": true}]}')
        >>> j.judge("x", ["x"]).score
        1.0
        >>> LLMJudge(lambda p: "Sure! Here you go").judge("x", ["x"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        mlsys.common.errors.ParseError: judge reply is not JSON ...
    """

    def __init__(
        self, complete: Callable[[str], str], *, template: str = JUDGE_PROMPT, name: str = "llm"
    ) -> None:
        if not callable(complete):
            raise InvalidInputError(f"complete must be callable, got {type(complete).__name__}")
        if "{contexts}" not in template or "{answer}" not in template:
            raise InvalidInputError("template must contain {contexts} and {answer}")
        self.complete = complete
        self.template = template
        self.name = name

    def judge(self, answer: str, contexts: Sequence[str]) -> FaithfulnessVerdict:
        """Ask the model; parse and validate its JSON."""
        body = "\n".join(f"[{i}] {c}" for i, c in enumerate(contexts, start=1))
        reply = self.complete(self.template.format(contexts=body, answer=answer))
        if not isinstance(reply, str):
            raise ParseError(f"judge reply is {type(reply).__name__}, expected a JSON string")
        try:
            data = json.loads(reply)
        except ValueError as exc:
            raise ParseError(f"judge reply is not JSON ({exc}): {reply[:120]!r}") from exc
        claims = data.get("claims") if isinstance(data, dict) else None
        if not isinstance(claims, list):
            raise ParseError(f'judge reply lacks a "claims" list: {reply[:120]!r}')
        out = []
        for i, c in enumerate(claims):
            if (
                not isinstance(c, dict)
                or not isinstance(c.get("claim"), str)
                or not isinstance(c.get("supported"), bool)
            ):
                raise ParseError(f'claims[{i}] must be {{"claim": str, "supported": bool}}, got {c!r:.120}')
            out.append(ClaimVerdict(c["claim"], c["supported"]))
        return FaithfulnessVerdict.from_claims(out, self.name)


def judge_records(
    judge: Judge, answers: Sequence[str | None], contexts: Sequence[Sequence[str]]
) -> list[FaithfulnessVerdict]:
    """Judge many answers; ``None`` answers (abstentions) get status ``"abstained"``.

    A judge that raises, or returns anything but a :class:`FaithfulnessVerdict` (or a verdict
    whose score is not in [0, 1]), yields a ``"failed"`` verdict carrying the error; the loop
    goes on.

    Example:
        >>> def broken(answer, contexts): raise RuntimeError("timeout")
        >>> class J:
        ...     name = "flaky"
        ...     judge = staticmethod(broken)
        >>> [v.status for v in judge_records(J(), ["a", None], [["a"], []])]
        ['failed', 'abstained']
    """
    if isinstance(answers, str) or not isinstance(answers, Sequence) or not isinstance(contexts, Sequence):
        raise InvalidInputError(
            "answers and contexts must be sequences (one answer or None, and one context list, per query)"
        )
    if not callable(getattr(judge, "judge", None)):
        raise InvalidInputError(
            f"judge must have a judge(answer, contexts) method, got {type(judge).__name__}"
        )
    if len(answers) != len(contexts):
        raise InvalidInputError(
            f"got {len(answers)} answers and {len(contexts)} context lists; expected one each"
        )
    name = str(getattr(judge, "name", type(judge).__name__))
    out = []
    for ans, ctx in zip(answers, contexts):
        if ans is None:
            out.append(FaithfulnessVerdict("abstained", (), None, name))
            continue
        try:
            v = judge.judge(ans, list(ctx))
            if not isinstance(v, FaithfulnessVerdict):
                raise ParseError(f"judge returned {type(v).__name__}, expected a FaithfulnessVerdict")
            if v.status == "scored" and (v.score is None or not 0.0 <= v.score <= 1.0):
                raise ParseError(f"judge returned score {v.score!r}, expected a number in [0, 1]")
        except Exception as exc:
            out.append(FaithfulnessVerdict("failed", (), None, name, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(v)
    return out
