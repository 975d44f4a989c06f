"""Beyond-accuracy metrics of recommendation lists: coverage, diversity, novelty, serendipity.

Every function takes ``ranked_ids``, an ``(n_lists, k)`` int64 array of item ids (one
recommendation list per row, best first, padded at the end with -1), with items numbered
``0..n_items-1``. Definitions follow Kaminskas & Bridge (2016), "Diversity, Serendipity, Novelty,
and Coverage: A Survey and Empirical Analysis of Beyond-Accuracy Objectives in Recommender
Systems", ACM TiiS 7(1):

* catalog coverage (Ge, Delgado-Battenfeld & Jannach 2010): the fraction of the catalogue that
  appears in at least one list;
* intra-list diversity (Smyth & McClave 2001; Ziegler et al. 2005): the mean pairwise distance
  between the items of a list, averaged over lists;
* novelty (Zhou et al. 2010; Vargas & Castells 2011): the mean self-information
  ``-log2 p(i)`` of the recommended items, where ``p(i)`` is the fraction of users who interacted
  with item ``i``;
* serendipity (Ge et al. 2010): the fraction of a list's items that are both *useful* (relevant
  in the qrels) and *unexpected* (absent from the list a primitive recommender, e.g. most-popular,
  makes for the same user), averaged over lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.common.metrics._qrels import Qrels
from mlsys.common.validation import as_array, check_k

__all__ = ["catalog_coverage", "intra_list_diversity", "novelty", "serendipity"]

_BLOCK = 4_000_000  # entries of the (lists, k, k) pair matrices built per block


def _ranked(ranked_ids: Any, n_items: int | None = None, *, k: int | None = None) -> npt.NDArray[np.int64]:
    arr = as_array(ranked_ids, name="ranked_ids")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise InvalidInputError(f"ranked_ids must have shape (n_lists, k), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"ranked_ids must be integer item ids, got dtype {arr.dtype}")
    if arr.shape[0] == 0:
        raise InvalidInputError("ranked_ids has no lists; expected at least one row")
    arr = arr.astype(np.int64, copy=False)
    if k is not None:
        arr = arr[:, : check_k(k)]
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < -1:
            raise InvalidInputError(f"ranked_ids holds {lo}; expected item ids >= 0 and -1 for padding")
        if n_items is not None and hi >= n_items:
            raise InvalidInputError(
                f"ranked_ids holds item {hi} but the catalogue has {n_items} items (0..{n_items - 1})"
            )
    return arr


def catalog_coverage(ranked_ids: Any, n_items: int) -> float:
    """Fraction of the ``n_items`` catalogue recommended in at least one list (padding ignored).

    Example:
        >>> import numpy as np
        >>> catalog_coverage(np.array([[0, 1], [1, 2], [2, -1]]), n_items=10)
        0.3
    """
    n = check_k(n_items, name="n_items", limit=None)
    arr = _ranked(ranked_ids, n)
    ids = arr[arr >= 0]
    return float(np.unique(ids).shape[0] / n)


def novelty(ranked_ids: Any, item_popularity: Any, *, k: int | None = None) -> float:
    """Mean self-information ``-log2 p(i)`` of the recommended items (bits), averaged over lists.

    Args:
        ranked_ids: ``(n_lists, k)`` item ids, -1 padded.
        item_popularity: ``p(i)`` for every item, in [0, 1]: the fraction of (training) users who
            interacted with item ``i``. Counts are refused (divide them by the number of users).
            A recommended item with ``p = 0`` has unbounded novelty and is refused.
        k: evaluate only the first ``k`` items of each list.

    Lists without any item are left out of the mean.

    Example:
        >>> import numpy as np
        >>> novelty(np.array([[0, 1]]), np.array([0.5, 0.25]))
        1.5
    """
    pop = as_array(item_popularity, dtype=np.float64, name="item_popularity")
    if pop.ndim != 1 or pop.size == 0:
        raise InvalidInputError(f"item_popularity must be a non-empty 1-D array, got shape {pop.shape}")
    if not np.isfinite(pop).all() or (pop < 0).any() or (pop > 1).any():
        raise InvalidInputError(
            "item_popularity must hold probabilities in [0, 1] (fraction of users who interacted with each "
            f"item), got values in [{pop.min()}, {pop.max()}]; divide counts by the number of users"
        )
    arr = _ranked(ranked_ids, pop.shape[0], k=k)
    valid = arr >= 0
    p = pop[np.where(valid, arr, 0)]
    zero = valid & (p <= 0)
    if zero.any():
        item = int(arr[zero][0])
        raise InvalidInputError(
            f"item {item} is recommended but has popularity 0, so -log2 p is infinite; "
            "expected p > 0 for every recommended item (smooth the popularity estimate)"
        )
    info = np.where(valid, -np.log2(np.where(valid, p, 1.0)), 0.0)
    m = valid.sum(axis=1)
    ok = m > 0
    if not ok.any():
        raise InvalidInputError("every list is empty (all -1); novelty needs at least one recommended item")
    return float((info.sum(axis=1)[ok] / m[ok]).mean())


def intra_list_diversity(
    ranked_ids: Any,
    item_vectors: Any | None = None,
    *,
    categories: Any | None = None,
    k: int | None = None,
) -> float:
    """Mean pairwise distance between the items of each list, averaged over lists.

    Exactly one source of distance:

    * ``item_vectors`` ``(n_items, dim)``: cosine distance ``1 - cos(u, v)`` (in [0, 2]);
    * ``categories``: 1-D integer labels ``(n_items,)`` (distance 1 when the labels differ,
      else 0) or a 2-D multi-hot ``(n_items, n_categories)`` matrix (Jaccard distance between the
      category sets; two empty sets are at distance 0), e.g. MovieLens genres.

    Lists with fewer than two items are left out of the mean. Computed in blocks over lists with
    one batched matrix product per block.

    Example:
        >>> import numpy as np
        >>> intra_list_diversity(np.array([[0, 1, 2]]), categories=np.array([5, 5, 7]))  # 2 of 3 pairs differ
        0.6666666666666666
    """
    if (item_vectors is None) == (categories is None):
        raise InvalidInputError(
            "pass exactly one of item_vectors (cosine) or categories (labels or multi-hot)"
        )
    if item_vectors is not None:
        feats = as_array(item_vectors, dtype=np.float64, name="item_vectors")
        if feats.ndim != 2:
            raise DimensionMismatchError(f"item_vectors must have shape (n_items, dim), got {feats.shape}")
        if not np.isfinite(feats).all():
            raise InvalidInputError("item_vectors contain NaN or inf; expected finite values")
        norms = np.linalg.norm(feats, axis=1)
        kind = "cosine"
    else:
        cats = as_array(categories, name="categories")
        if cats.ndim == 1:
            if cats.size and not np.issubdtype(cats.dtype, np.integer):
                raise InvalidInputError(f"categories (1-D) must be integer labels, got dtype {cats.dtype}")
            kind = "label"
            feats = cats.astype(np.int64)
        elif cats.ndim == 2:
            if cats.size and not (np.issubdtype(cats.dtype, np.integer) or cats.dtype == np.bool_):
                raise InvalidInputError(
                    f"categories (2-D) must be a 0/1 multi-hot matrix, got dtype {cats.dtype}"
                )
            if ((cats != 0) & (cats != 1)).any():
                raise InvalidInputError("categories (2-D) must hold only 0 and 1 (multi-hot)")
            kind = "jaccard"
            feats = cats.astype(np.float64)
        else:
            raise InvalidInputError(f"categories must be 1-D labels or 2-D multi-hot, got shape {cats.shape}")
    arr = _ranked(ranked_ids, feats.shape[0], k=k)
    valid = arr >= 0
    m = valid.sum(axis=1)
    lists = np.flatnonzero(m >= 2)
    if lists.size == 0:
        raise InvalidInputError("no list has two or more items; intra-list diversity needs pairs")
    if kind == "cosine":
        used = np.unique(arr[valid])
        if (norms[used] == 0).any():
            raise InvalidInputError(
                f"item {int(used[norms[used] == 0][0])} has a zero vector; cosine is undefined"
            )
        unit = feats / np.where(norms > 0, norms, 1.0)[:, None]
    width = arr.shape[1]
    step = max(1, _BLOCK // max(1, width * width))
    total = 0.0
    for s in range(0, lists.shape[0], step):
        rows = lists[s : s + step]
        ids, v = arr[rows], valid[rows]
        safe = np.where(v, ids, 0)
        pair = v[:, :, None] & v[:, None, :]
        np.einsum("nii->ni", pair)[...] = False  # drop self-pairs
        if kind == "cosine":
            x = unit[safe] * v[:, :, None]
            dist = 1.0 - np.matmul(x, x.transpose(0, 2, 1))
        elif kind == "label":
            lab = feats[safe]
            dist = (lab[:, :, None] != lab[:, None, :]).astype(np.float64)
        else:
            x = feats[safe] * v[:, :, None]
            inter = np.matmul(x, x.transpose(0, 2, 1))
            size = x.sum(axis=2)
            union = size[:, :, None] + size[:, None, :] - inter
            dist = np.where(union > 0, 1.0 - inter / np.where(union > 0, union, 1.0), 0.0)
        mm = m[rows].astype(np.float64)
        total += float(((dist * pair).sum(axis=(1, 2)) / (mm * (mm - 1))).sum())
    return total / lists.shape[0]


def _row_isin(a: npt.NDArray[np.int64], b: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
    """``out[i, j] = a[i, j] in b[i, :]`` (ids >= 0; -1 never matches), vectorised over rows."""
    uniq = np.unique(b[b >= 0])
    if uniq.size == 0:
        return np.zeros(a.shape, dtype=bool)
    n, m = a.shape[0], uniq.shape[0]
    rows = np.arange(n, dtype=np.int64)[:, None]
    kb = (rows * m + np.searchsorted(uniq, b))[b >= 0]
    kb.sort()
    code = np.minimum(np.searchsorted(uniq, a), m - 1)
    found = (uniq[code] == a) & (a >= 0)
    ka = rows * m + code
    pos = np.minimum(np.searchsorted(kb, ka), kb.shape[0] - 1)
    return found & (kb[pos] == ka)


def serendipity(
    ranked_ids: Any,
    qrels: Qrels,
    expected_ids: Any,
    *,
    k: int | None = None,
    relevance_level: int = 1,
) -> float:
    """Fraction of recommended items that are relevant *and* not expected, averaged over lists.

    Ge et al. (2010): with ``REC`` a user's list, ``PM`` the list of a primitive, obvious
    recommender (most popular items, say) and ``USEFUL`` the relevant items,
    ``serendipity = |(REC minus PM) ∩ USEFUL| / |REC|``. Lists without items are left out.

    Args:
        ranked_ids: ``(n_lists, k)`` item ids, -1 padded; row ``i`` is query/user ``i`` of ``qrels``.
        qrels: which items are relevant for each user (relevance >= ``relevance_level``).
        expected_ids: the primitive recommender's lists, ``(n_lists, m)`` -1 padded, or one 1-D
            list used for every user.
        k: evaluate only the first ``k`` items of each list.

    Example:
        >>> import numpy as np
        >>> q = Qrels.from_lists([np.array([1, 2])])
        >>> serendipity(np.array([[1, 2, 3, 4]]), q, expected_ids=np.array([2, 9]))  # only item 1 counts
        0.25
    """
    if not isinstance(qrels, Qrels):
        raise InvalidInputError(f"qrels must be a Qrels, got {type(qrels).__name__}")
    if (
        isinstance(relevance_level, bool)
        or not isinstance(relevance_level, (int, np.integer))
        or relevance_level < 1
    ):
        raise InvalidInputError(f"relevance_level must be an integer >= 1, got {relevance_level!r}")
    arr = _ranked(ranked_ids, k=k)
    if arr.shape[0] != qrels.n_queries:
        raise InvalidInputError(f"ranked_ids has {arr.shape[0]} rows but qrels has {qrels.n_queries} queries")
    exp = as_array(expected_ids, name="expected_ids")
    if exp.size and not np.issubdtype(exp.dtype, np.integer):
        raise InvalidInputError(f"expected_ids must be integer item ids, got dtype {exp.dtype}")
    exp = exp.astype(np.int64)
    if exp.ndim == 1:
        exp = np.broadcast_to(exp, (arr.shape[0], exp.shape[0]))
    if exp.ndim != 2 or exp.shape[0] != arr.shape[0]:
        raise InvalidInputError(
            f"expected_ids must be 1-D or have one row per list ({arr.shape[0]}), got shape {exp.shape}"
        )
    valid = arr >= 0
    useful = qrels.lookup(arr) >= relevance_level
    unexpected = ~_row_isin(arr, np.ascontiguousarray(exp))
    good = (valid & useful & unexpected).sum(axis=1)
    m = valid.sum(axis=1)
    ok = m > 0
    if not ok.any():
        raise InvalidInputError(
            "every list is empty (all -1); serendipity needs at least one recommended item"
        )
    return float((good[ok] / m[ok]).mean())
