"""Baselines and fallbacks: popularity, item-kNN, EASE, content-based and demographic priors.

Example:
    >>> from mlsys.recsys import EASE, Interactions
    >>> x = Interactions(users=[1, 1, 2, 2, 3], items=[10, 11, 10, 11, 10])
    >>> EASE(l2=1.0).fit(x).recommend([3], 1)[0].tolist()
    [[11]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mlsys.common.errors import InvalidInputError
from mlsys.recsys._base import Recommender
from mlsys.recsys._data import FeatureTable, IdIndex, Interactions

__all__ = ["EASE", "ContentBased", "DemographicPrior", "ItemKNN", "Popularity", "RandomRecommender"]


def _positive_float(value: object, name: str, *, allow_zero: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)
    if not ok or (value < 0 if allow_zero else value <= 0):  # type: ignore[operator]
        bound = ">= 0" if allow_zero else "> 0"
        raise InvalidInputError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


class Popularity(Recommender):
    """Most popular items: the number of distinct users per item, optionally time-decayed.

    Args:
        half_life: ``None`` for global counts; otherwise an event of age ``a`` seconds (relative to
            the latest training timestamp) weighs ``0.5 ** (a / half_life)``.

    Serves any user, known or not (the last resort of a :class:`~mlsys.recsys.FallbackChain`).

    Example:
        >>> from mlsys.recsys import Interactions
        >>> x = Interactions(users=[1, 2, 3], items=[5, 5, 6], timestamps=[0, 0, 100])
        >>> Popularity().fit(x).item_scores_.tolist()
        [2.0, 1.0]
        >>> Popularity(half_life=10.0).fit(x).recommend([9], 1)[0].tolist()
        [[6]]
    """

    serves_unknown_users = True

    def __init__(self, half_life: float | None = None) -> None:
        self.half_life = None if half_life is None else _positive_float(half_life, "half_life")
        self.name = "popularity" if half_life is None else "popularity_decayed"

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
        if self.half_life is None:
            self.item_scores_ = np.asarray(seen.sum(axis=0), dtype=np.float64).ravel()
            return
        pos = item_index.positions(train.items, missing="mask")
        keep = pos >= 0
        age = (train.timestamps.max() - train.timestamps[keep]).astype(np.float64)
        self.item_scores_ = np.bincount(
            pos[keep], weights=0.5 ** (age / self.half_life), minlength=len(item_index)
        ).astype(np.float64)

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        return np.broadcast_to(
            self.item_scores_.astype(np.float32), (user_ids.shape[0], self.item_scores_.shape[0])
        )


class ItemKNN(Recommender):
    """Item-based k-nearest neighbours with cosine similarity on the binary user-item matrix.

    ``sim(i, j) = |U_i ∩ U_j| / sqrt(|U_i| |U_j|)``, self-similarity zeroed; each *source* item keeps
    its ``neighbors`` most similar items (``None``: all) and a user's score for item ``j`` is
    ``sum over history items i of sim(i, j)``. With ``neighbors=100`` this is the variant that
    reproduces the reference ItemKNN figure on MovieLens-100K (same as implicit's
    ``CosineRecommender(K=100)``).

    Example:
        >>> from mlsys.recsys import Interactions
        >>> x = Interactions(users=[1, 1, 2, 2, 3], items=[10, 11, 10, 11, 10])
        >>> ItemKNN(neighbors=5).fit(x).recommend([3], 1)[0].tolist()
        [[11]]
    """

    def __init__(self, neighbors: int | None = 100, block_size: int = 2048) -> None:
        if neighbors is not None and (
            isinstance(neighbors, bool) or not isinstance(neighbors, int) or neighbors <= 0
        ):
            raise InvalidInputError(f"neighbors must be a positive int or None, got {neighbors!r}")
        self.neighbors = neighbors
        self.block_size = block_size
        self.name = "itemknn"

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
        xt = seen.T.tocsr().astype(np.float32)  # items x users
        norms = np.sqrt(np.asarray(xt.sum(axis=1)).ravel())
        inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
        n = xt.shape[0]
        rows, cols, vals = [], [], []
        for start in range(0, n, self.block_size):
            stop = min(n, start + self.block_size)
            block = (xt[start:stop] @ xt.T).toarray()
            block *= inv[start:stop, None]
            block *= inv[None, :]
            block[np.arange(stop - start), np.arange(start, stop)] = 0.0
            if self.neighbors is not None and self.neighbors < n:
                kk = self.neighbors
                keep = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
                r = np.repeat(np.arange(start, stop), kk)
                c = keep.ravel()
                v = np.take_along_axis(block, keep, axis=1).ravel()
            else:
                r, c = np.nonzero(block)
                v = block[r, c]
                r = r + start
            nz = v > 0
            rows.append(r[nz])
            cols.append(c[nz])
            vals.append(v[nz])
        self.similarity_ = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, n),
            dtype=np.float32,
        )

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        return (self.seen_[positions] @ self.similarity_).toarray()


class EASE(Recommender):
    """EASE (Steck, WWW 2019): a closed-form item-item linear autoencoder with a zero diagonal.

    ``P = (X^T X + l2 * I)^-1``, ``B = -P / diag(P)`` column-wise, ``diag(B) = 0``; scores ``X_u B``.
    Fitting inverts an ``n_items x n_items`` matrix (float64), so it suits catalogues of
    up to a few tens of thousands of items.

    Example:
        >>> from mlsys.recsys import Interactions
        >>> x = Interactions(users=[1, 1, 2, 2, 3], items=[10, 11, 10, 11, 10])
        >>> EASE(l2=1.0).fit(x).weights_.shape
        (2, 2)
    """

    def __init__(self, l2: float = 500.0) -> None:
        self.l2 = _positive_float(l2, "l2")
        self.name = "ease"

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
        gram = (seen.T @ seen).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.l2
        p = np.linalg.inv(gram)
        b = p / (-np.diag(p))[None, :]
        b[np.diag_indices_from(b)] = 0.0
        self.weights_ = b.astype(np.float32)

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        return self.seen_[positions] @ self.weights_


class ContentBased(Recommender):
    """Content-based: a user's profile is the mean feature vector of their training items.

    Items are described by ``items`` (a :class:`FeatureTable` covering the catalogue) restricted to
    ``features`` (default: all columns, see :meth:`FeatureTable.dense`). ``similarity="dot"``
    (default) scores ``profile . item`` -- items matching more of the user's tastes score higher;
    ``"cosine"`` normalises both sides. Items never seen in training are scored like any other,
    which makes this a cold-start baseline.

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
        >>> items = FeatureTable([1, 2, 3], {"g": np.array([[1, 0], [0, 1], [1, 0]])}, [FeatureSpec("g", "multi_hot", 2)])
        >>> m = ContentBased().fit(Interactions(users=[7], items=[1]), catalogue=[1, 2, 3], items=items)
        >>> m.recommend([7], 1)[0].tolist()
        [[3]]
    """

    def __init__(self, features: Sequence[str] | None = None, similarity: str = "dot") -> None:
        if similarity not in ("dot", "cosine"):
            raise InvalidInputError(f"similarity must be 'dot' or 'cosine', got {similarity!r}")
        self.features = None if features is None else tuple(features)
        self.similarity = similarity
        self.name = "content"

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
        if items is None:
            raise InvalidInputError("ContentBased.fit needs items=FeatureTable covering the catalogue")
        design = items.rows(item_index.ids).dense(self.features).toarray()
        counts = np.maximum(np.asarray(seen.sum(axis=1)), 1.0)
        profiles = np.asarray(seen @ design) / counts
        if self.similarity == "cosine":
            design = design / np.maximum(np.linalg.norm(design, axis=1, keepdims=True), 1e-12)
            profiles = profiles / np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-12)
        self.item_vectors_ = design.astype(np.float32)
        self.user_profiles_ = profiles.astype(np.float32)

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        return self.user_profiles_[positions] @ self.item_vectors_.T


class DemographicPrior(Recommender):
    """Popularity within a demographic bucket, backing off to global popularity.

    A bucket is the combination of the user's values of the categorical ``features`` (e.g.
    ``("age", "gender")``). Item scores within a bucket are shrunk towards global popularity:
    ``(count_bucket + shrinkage * p_global) / (n_bucket_users + shrinkage)``, so small buckets back
    off smoothly; users without a feature row (unknown ids) get the global ranking.

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions
        >>> users = FeatureTable([1, 2, 3], {"g": np.array([0, 1, 1])}, [FeatureSpec("g", "categorical", 2)])
        >>> x = Interactions(users=[1, 1, 2, 3], items=[5, 6, 6, 7])
        >>> m = DemographicPrior(features=["g"], shrinkage=0.0).fit(x, users=users)
        >>> m.recommend([1, 99], 1, exclude_seen=False)[0].tolist()
        [[5], [6]]
    """

    serves_unknown_users = True

    def __init__(self, features: Sequence[str] = ("age", "gender"), shrinkage: float = 10.0) -> None:
        if not features:
            raise InvalidInputError("DemographicPrior needs at least one categorical feature name")
        self.features = tuple(features)
        self.shrinkage = _positive_float(shrinkage, "shrinkage", allow_zero=True)
        self.name = "demographic"

    def _bucket(self, table: FeatureTable) -> npt.NDArray[np.int64]:
        by_name = {s.name: s for s in table.specs}
        key = np.zeros(table.n, dtype=np.int64)
        for f in self.features:
            spec = by_name.get(f)
            if spec is None or spec.kind != "categorical":
                raise InvalidInputError(
                    f"DemographicPrior feature {f!r} must be a categorical column of the user table; "
                    f"columns are {[(s.name, s.kind) for s in table.specs]}"
                )
            key = key * spec.size + table.column(f)
        return key

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
        if users is None:
            raise InvalidInputError(
                "DemographicPrior.fit needs users=FeatureTable with the demographic columns"
            )
        self._bucket(users)  # validate the columns before learning anything
        self.users_ = users
        bucket_of_user = np.full(len(user_index), -1, dtype=np.int64)
        pos = users.index.positions(user_index.ids, missing="mask")
        bucket_of_user[pos >= 0] = self._bucket(users)[pos[pos >= 0]]
        counts = np.asarray(seen.sum(axis=0)).ravel()
        self.global_scores_ = counts / max(len(user_index), 1)
        self.bucket_scores_: dict[int, npt.NDArray[np.float64]] = {}
        for b in np.unique(bucket_of_user[bucket_of_user >= 0]):
            members = bucket_of_user == b
            c = np.asarray(seen[members].sum(axis=0)).ravel()
            n = float(members.sum())
            self.bucket_scores_[int(b)] = (c + self.shrinkage * self.global_scores_) / (n + self.shrinkage)

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        out = np.tile(self.global_scores_.astype(np.float32), (user_ids.shape[0], 1))
        rows = self.users_.index.positions(user_ids, missing="mask")
        has = np.flatnonzero(rows >= 0)
        if has.size:
            # a batch may name a user twice: take each feature row once
            uniq, inv = np.unique(rows[has], return_inverse=True)
            buckets = self._bucket(self.users_.take(uniq))[inv.ravel()]
            for r, b in zip(has, buckets):
                scores = self.bucket_scores_.get(int(b))
                if scores is not None:
                    out[r] = scores
        return out


class RandomRecommender(Recommender):
    """Uniformly random scores (seeded): the floor every model must clear.

    A user's scores depend only on ``seed`` and the user id, so repeated calls agree.

    Example:
        >>> from mlsys.recsys import Interactions
        >>> m = RandomRecommender(seed=1).fit(Interactions(users=[1], items=[5]), catalogue=[5, 6, 7])
        >>> bool((m.score([1]) == m.score([1])).all())
        True
    """

    serves_unknown_users = True

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.name = "random"

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
        self.n_items_ = len(item_index)

    def _score(self, user_ids: npt.NDArray[np.int64], positions: npt.NDArray[np.int64]) -> np.ndarray:
        return np.stack(
            [np.random.default_rng([self.seed, int(u) & 0x7FFFFFFF]).random(self.n_items_) for u in user_ids]
        ).reshape(user_ids.shape[0], self.n_items_)
