"""One metric at a time on ranked id arrays: thin wrappers over :func:`evaluate_ranked`."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.metrics._evaluate import evaluate_ranked
from mlsys.common.metrics._qrels import Qrels
from mlsys.common.metrics._ranking import Gain, MetricSpec

__all__ = ["average_precision", "hit_rate", "mrr", "ndcg", "precision", "r_precision", "recall"]


def _one(family: str, ranked_ids: Any, qrels: Qrels, k: int | None, **kw: Any) -> npt.NDArray[np.float64]:
    name = family if k is None else f"{family}@{k}"
    kw.setdefault("empty_queries", "zero")
    res = evaluate_ranked(ranked_ids, qrels, [name], **kw)
    return np.array(res.per_query[MetricSpec.parse(name).name])


def ndcg(
    ranked_ids: Any, qrels: Qrels, k: int | None = None, *, gain: Gain = "linear"
) -> npt.NDArray[np.float64]:
    """Per-query nDCG@k (``k=None``: whole list) of ranked id arrays; IDCG from the qrels.

    Queries without relevant documents score 0 (trec_eval); use :func:`evaluate_ranked` for
    other policies.

    Example:
        >>> import numpy as np
        >>> ndcg(np.array([[2, 1]]), Qrels.from_lists([np.array([1])]), k=2).round(4).tolist()
        [0.6309]
    """
    return _one("ndcg", ranked_ids, qrels, k, gain=gain)


def mrr(ranked_ids: Any, qrels: Qrels, k: int | None = None) -> npt.NDArray[np.float64]:
    """Per-query reciprocal rank of the first relevant document within the top k (else 0).

    Example:
        >>> import numpy as np
        >>> mrr(np.array([[2, 1]]), Qrels.from_lists([np.array([1])]), k=10).tolist()
        [0.5]
    """
    return _one("mrr", ranked_ids, qrels, k)


def recall(ranked_ids: Any, qrels: Qrels, k: int | None = None) -> npt.NDArray[np.float64]:
    """Per-query fraction of the relevant documents found in the top k.

    Example:
        >>> import numpy as np
        >>> recall(np.array([[2, 1]]), Qrels.from_lists([np.array([1, 5])]), k=2).tolist()
        [0.5]
    """
    return _one("recall", ranked_ids, qrels, k)


def precision(ranked_ids: Any, qrels: Qrels, k: int | None = None) -> npt.NDArray[np.float64]:
    """Per-query relevant documents in the top k divided by k (``k=None``: by the number retrieved).

    Example:
        >>> import numpy as np
        >>> precision(np.array([[2, 1, -1]]), Qrels.from_lists([np.array([1])]), k=4).tolist()
        [0.25]
    """
    return _one("precision", ranked_ids, qrels, k)


def average_precision(ranked_ids: Any, qrels: Qrels, k: int | None = None) -> npt.NDArray[np.float64]:
    """Per-query average precision over the top k (trec_eval ``map_cut_k``; ``k=None``: ``map``).

    Example:
        >>> import numpy as np
        >>> average_precision(np.array([[2, 1]]), Qrels.from_lists([np.array([1, 2])])).tolist()
        [1.0]
    """
    return _one("map", ranked_ids, qrels, k)


def hit_rate(ranked_ids: Any, qrels: Qrels, k: int | None = None) -> npt.NDArray[np.float64]:
    """Per-query 1.0 if a relevant document is in the top k, else 0.0.

    Example:
        >>> import numpy as np
        >>> hit_rate(np.array([[2, 1]]), Qrels.from_lists([np.array([1])]), k=1).tolist()
        [0.0]
    """
    return _one("hit_rate", ranked_ids, qrels, k)


def r_precision(ranked_ids: Any, qrels: Qrels) -> npt.NDArray[np.float64]:
    """Per-query precision at rank R, R = the number of relevant documents of the query.

    Example:
        >>> import numpy as np
        >>> r_precision(np.array([[2, 1, 3]]), Qrels.from_lists([np.array([1, 3])])).tolist()
        [0.5]
    """
    return _one("r_precision", ranked_ids, qrels, None)
