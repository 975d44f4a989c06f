"""The recommender contract shared by every model: fit on interactions, score, recommend top-k.

A model ranks a fixed catalogue (``item_ids_``, given at fit or the training items). ``recommend``
does the common work once: unknown-user handling, masking of seen items, ``allow`` filtering,
deterministic top-k (ties broken by catalogue position) and ``-1``/``-inf`` padding when fewer
than ``k`` items remain (``k`` larger than the catalogue is not an error: the tail is padded).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mlsys.common.errors import InvalidInputError, NotFittedError
from mlsys.common.limits import check_result_size
from mlsys.common.validation import as_ids, check_k
from mlsys.recsys._data import FeatureTable, IdIndex, Interactions

__all__ = ["Recommender", "top_k"]


def check_flag(value: Any, name: str) -> bool:
    """Return ``value`` as a bool if it is one (Python or numpy), else raise InvalidInputError."""
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidInputError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


def top_k(scores: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Row-wise top-k positions and scores, best first; ties keep the lower position; ``-inf`` entries pad with ``-1``.

    Example:
        >>> import numpy as np
        >>> pos, sc = top_k(np.array([[0.1, 0.5, -np.inf]], dtype=np.float32), 3)
        >>> pos.tolist(), sc.tolist()
        ([[1, 0, -1]], [[0.5, 0.10000000149011612, -inf]])
    """
    if not isinstance(scores, np.ndarray) or scores.ndim != 2:
        raise InvalidInputError(
            f"scores must be a 2-D array (n, n_items), got {getattr(scores, 'shape', type(scores).__name__)}"
        )
    k = check_k(k)
    n, m = scores.shape
    check_result_size(n, k)
    kk = min(k, m)
    if kk == 0 or n == 0:
        return np.full((n, k), -1, np.int64), np.full((n, k), -np.inf, np.float32)
    if kk < m:
        part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        # A partition may cut through a tie at the k-th score: take every tied column, then sort.
        kth = np.take_along_axis(scores, part, axis=1).min(axis=1, keepdims=True)
        cand_mask = scores >= kth
        if int(cand_mask.sum(axis=1).max()) > kk:
            pos = np.argsort(-scores, axis=1, kind="stable")[:, :kk]
        else:
            sub = np.take_along_axis(scores, part, axis=1)
            order = np.lexsort((part, -sub), axis=1)
            pos = np.take_along_axis(part, order, axis=1)
    else:
        pos = np.argsort(-scores, axis=1, kind="stable")
    sc = np.take_along_axis(scores, pos, axis=1).astype(np.float32)
    pos = np.where(np.isneginf(sc), -1, pos).astype(np.int64)
    if kk < k:
        pos = np.pad(pos, ((0, 0), (0, k - kk)), constant_values=-1)
        sc = np.pad(sc, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return pos, sc


class Recommender(ABC):
    """Base class: ``fit(train, ...) -> self``, ``score(users)``, ``recommend(users, k)``.

    Subclasses implement :meth:`_fit` and :meth:`_score` on dense positions. Learned state ends in
    ``_`` (``item_ids_``, ``user_index_``, ``seen_``).
    """

    #: short name used in tables and by :class:`~mlsys.recsys.FallbackChain`.
    name: str = "recommender"
    #: whether users never seen at fit can still be scored (from features or globally).
    serves_unknown_users: bool = False

    def fit(
        self,
        train: Interactions,
        *,
        catalogue: npt.ArrayLike | None = None,
        users: FeatureTable | None = None,
        items: FeatureTable | None = None,
    ) -> Recommender:
        """Learn from ``train``; rank the ``catalogue`` item ids (default: the training items).

        ``users``/``items`` feature tables are used by models that need them and ignored by others.
        Training events on items outside the catalogue are ignored (documented behaviour, tested).
        Empty interactions raise :class:`~mlsys.common.errors.EmptyIndexError`; a failed fit
        leaves a previously fitted model unchanged.
        """
        train.require_nonempty("training interactions")
        cat = np.unique(train.items) if catalogue is None else as_ids(catalogue, name="catalogue")
        item_index = IdIndex(cat)
        user_index = IdIndex(np.unique(train.users))
        seen = train.to_csr(user_index, item_index)
        self._fit(train, seen, user_index, item_index, users=users, items=items)
        self.item_index_ = item_index
        self.user_index_ = user_index
        self.seen_ = seen
        return self

    @property
    def item_ids_(self) -> npt.NDArray[np.int64]:
        """The catalogue, in score-column order."""
        self._check_fitted()
        return self.item_index_.ids

    def _check_fitted(self) -> None:
        if not hasattr(self, "item_index_"):
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(train) first")

    def knows(self, users: Any) -> npt.NDArray[np.bool_]:
        """Which users this model can score (seen at fit, or any user if :attr:`serves_unknown_users`)."""
        self._check_fitted()
        ids = as_ids(users, name="users")
        if self.serves_unknown_users:
            return np.ones(ids.shape, dtype=bool)
        return self.user_index_.contains(ids)

    def history_size(self, users: Any) -> npt.NDArray[np.int64]:
        """Number of distinct training items of each user (0 for unknown users)."""
        self._check_fitted()
        pos = self.user_index_.positions(users, missing="mask")
        counts = np.diff(self.seen_.indptr)
        return np.where(pos >= 0, counts[np.maximum(pos, 0)], 0).astype(np.int64)

    def score(self, users: Any) -> npt.NDArray[np.float32]:
        """Dense scores ``(n_users, n_catalogue)`` float32, higher is better.

        Unknown users raise :class:`~mlsys.common.errors.UnknownIdError` unless the model serves
        unknown users (popularity, demographic prior); route them through a
        :class:`~mlsys.recsys.FallbackChain` instead.
        """
        self._check_fitted()
        ids = as_ids(users, name="users")
        if not self.serves_unknown_users:
            self.user_index_.positions(ids)  # raises UnknownIdError naming the ids
        pos = self.user_index_.positions(ids, missing="mask")
        return np.ascontiguousarray(self._score(ids, pos), dtype=np.float32)

    def recommend(
        self,
        users: Any,
        k: int,
        *,
        exclude_seen: bool = True,
        allow: npt.ArrayLike | None = None,
        batch_size: int = 1024,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-``k`` item ids and scores per user, ``(n_users, k)``, padded with ``-1``/``-inf``.

        Args:
            users: user ids.
            k: list length (may exceed the catalogue: the tail is padded).
            exclude_seen: mask items the user interacted with in training.
            allow: only these item ids may be returned (ids outside the catalogue are ignored).
            batch_size: users scored at once (bounds memory to ``batch_size * n_items`` floats).

        Example:
            >>> from mlsys.recsys import Popularity, Interactions
            >>> m = Popularity().fit(Interactions(users=[1, 2, 2], items=[7, 7, 8]))
            >>> m.recommend([1], 2)[0].tolist()
            [[8, -1]]
        """
        k = check_k(k)
        batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
        check_flag(exclude_seen, "exclude_seen")
        self._check_fitted()
        ids = as_ids(users, name="users")
        check_result_size(ids.shape[0], k)
        if not self.serves_unknown_users:
            self.user_index_.positions(ids)
        allow_mask = None
        if allow is not None:
            allow_pos = self.item_index_.positions(as_ids(allow, name="allow"), missing="mask")
            allow_mask = np.zeros(len(self.item_index_), dtype=bool)
            allow_mask[allow_pos[allow_pos >= 0]] = True
        out_ids = np.full((ids.shape[0], k), -1, dtype=np.int64)
        out_sc = np.full((ids.shape[0], k), -np.inf, dtype=np.float32)
        cat = self.item_index_.ids
        for start in range(0, ids.shape[0], batch_size):
            chunk = ids[start : start + batch_size]
            pos = self.user_index_.positions(chunk, missing="mask")
            s = np.array(self._score(chunk, pos), dtype=np.float32, copy=True)
            s[~np.isfinite(s)] = np.float32(np.finfo(np.float32).min)
            if allow_mask is not None:
                s[:, ~allow_mask] = -np.inf
            if exclude_seen:
                known = np.flatnonzero(pos >= 0)
                if known.size:
                    sub = self.seen_[pos[known]].tocoo()
                    s[known[sub.row], sub.col] = -np.inf
            p, sc = top_k(s, k)
            out_ids[start : start + chunk.shape[0]] = np.where(p >= 0, cat[np.maximum(p, 0)], -1)
            out_sc[start : start + chunk.shape[0]] = sc
        return out_ids, out_sc

    @abstractmethod
    def _fit(
        self,
        train: Interactions,
        seen: sp.csr_matrix,
        user_index: IdIndex,
        item_index: IdIndex,
        *,
        users: FeatureTable | None,
        items: FeatureTable | None,
    ) -> None:
        """Learn; ``seen`` is the binary ``(n_users, n_catalogue)`` training matrix."""

    @abstractmethod
    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        """Scores ``(len(user_ids), n_catalogue)``; ``positions`` is ``-1`` for users unknown at fit."""

    def __repr__(self) -> str:
        params = ", ".join(
            f"{k}={v!r}" for k, v in vars(self).items() if not k.endswith("_") and not k.startswith("_")
        )
        return f"{type(self).__name__}({params})"
