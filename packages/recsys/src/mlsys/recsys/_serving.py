"""Serving: two-tower retrieval over an ANN index, and a fallback chain that routes by history.

:class:`TwoTowerRetriever` encodes the catalogue with the item tower into an
:mod:`mlsys.common.ann` index bound to the model's :class:`~mlsys.common.spaces.EmbeddingSpace`;
``add_items`` encodes new items from their features and makes them recommendable immediately, no
retraining. :class:`FallbackChain` sends each user to the first source that can serve them
(enough history, known to the model) and reports which source answered.

Example:
    >>> import numpy as np
    >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions, Popularity, TwoTowerConfig, TwoTowerModel
    >>> items = FeatureTable(np.arange(6), {"g": np.eye(6)[:, :3].copy()}, [FeatureSpec("g", "multi_hot", 3)])
    >>> x = Interactions(users=[1, 1, 2, 2], items=[0, 1, 2, 3])
    >>> tt = TwoTowerModel(TwoTowerConfig(dim=8, epochs=1)).fit(x, items=items, progress=False)
    >>> chain = FallbackChain([("two_tower", TwoTowerRetriever(tt, items), 1), ("popularity", Popularity().fit(x), 0)],
    ...                       history=x)
    >>> out = chain.recommend_with_sources([1, 99], 2)
    >>> out.sources.tolist()
    ['two_tower', 'popularity']
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.ann import VectorIndex, make_index
from mlsys.common.errors import DuplicateIdError, InvalidInputError, UnknownIdError
from mlsys.common.limits import check_result_size
from mlsys.common.validation import as_ids, check_k
from mlsys.recsys._base import check_flag
from mlsys.recsys._data import FeatureTable, IdIndex, Interactions
from mlsys.recsys._two_tower import TwoTowerModel

__all__ = ["FallbackChain", "FallbackStage", "RoutedRecommendations", "TwoTowerRetriever"]


class TwoTowerRetriever:
    """Serve a :class:`TwoTowerModel`: item vectors in an ANN index, users encoded on request.

    Args:
        model: a fitted two-tower model.
        items: the catalogue's feature table (warm items also use their id embedding).
        index: ``"exact"`` (default), ``"faiss"``, ``"hnsw"`` or a ready, empty
            :class:`~mlsys.common.ann.VectorIndex` bound to ``model.space``.
        index_params: keyword arguments of :func:`mlsys.common.ann.make_index`.
        users: user features for users the model has not seen (cold users with demographics).
        fallback: optional recommender (with ``recommend`` and ``knows``) for users the model cannot
            encode (unknown id without features); without one, such users raise
            :class:`~mlsys.common.errors.UnknownIdError`. A :class:`FallbackChain` is the general
            router.

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import FeatureSpec, FeatureTable, Interactions, TwoTowerConfig, TwoTowerModel
        >>> items = FeatureTable(np.arange(4), {"g": np.eye(4)}, [FeatureSpec("g", "multi_hot", 4)])
        >>> tt = TwoTowerModel(TwoTowerConfig(dim=8, epochs=1)).fit(
        ...     Interactions(users=[1, 1], items=[0, 1]), items=items, progress=False)
        >>> r = TwoTowerRetriever(tt, items)
        >>> new = FeatureTable([100], {"g": np.array([[1.0, 0, 0, 0]])}, items.specs)
        >>> r.add_items(new)
        >>> 100 in r.recommend([1], 4)[0][0]
        True
    """

    name = "two_tower"

    def __init__(
        self,
        model: TwoTowerModel,
        items: FeatureTable,
        *,
        index: str | VectorIndex = "exact",
        index_params: dict[str, Any] | None = None,
        users: FeatureTable | None = None,
        fallback: Any = None,
    ) -> None:
        model._check_fitted()
        self.model = model
        vecs = model.encode_items(items)
        if isinstance(index, str):
            self.index: VectorIndex = make_index(index, model.space, **(index_params or {}))  # type: ignore[arg-type]
        else:
            model.space.check_same(index.space, what="the given index")
            if len(index):
                raise InvalidInputError(
                    f"the given index already holds {len(index)} items; expected an empty index"
                )
            self.index = index
        self.index.add(items.ids, vecs, space=model.space)
        self.items = items
        self.users = users
        self.fallback = fallback
        self.last_add_seconds_: float | None = None

    @property
    def item_ids_(self) -> npt.NDArray[np.int64]:
        """Item ids currently servable."""
        return np.sort(self.index.ids())

    def _user_table(self) -> FeatureTable | None:
        return self.users if self.users is not None else self.model.users_

    def knows(self, users: Any) -> npt.NDArray[np.bool_]:
        """Which users the model can encode: a training history, or a user-feature row when the tower has features."""
        ids = as_ids(users, name="users")
        if self.model.net_.user_features.specs:
            table = self._user_table()
            return table.index.contains(ids) if table is not None else np.zeros(ids.shape, dtype=bool)
        return self.model.knows_user(ids)

    def history_size(self, users: Any) -> npt.NDArray[np.int64]:
        """Distinct training items per user (0 for users without history)."""
        pos = self.model.user_vocab_.positions(users, missing="mask")
        counts = np.diff(self.model.history_.indptr)
        return np.where(pos >= 0, counts[np.maximum(pos, 0)], 0).astype(np.int64)

    def add_items(self, new_items: FeatureTable) -> None:
        """Encode ``new_items`` from their features and make them servable now (no retraining).

        Raises :class:`~mlsys.common.errors.DuplicateIdError` if an id is already indexed (use a
        new id to replace an item) and :class:`~mlsys.common.errors.InvalidInputError` for a table
        with another schema; duplicate ids or NaN features are refused when the
        :class:`FeatureTable` is built. A rejected call changes nothing. The time from call to
        servable is kept in :attr:`last_add_seconds_`.
        """
        t0 = time.perf_counter()
        if not isinstance(new_items, FeatureTable):
            raise InvalidInputError(f"new_items must be a FeatureTable, got {type(new_items).__name__}")
        new_items.check_schema(self.items.specs, what="new items")
        present = np.array([i in self.index for i in new_items.ids.tolist()], dtype=bool)
        if present.any():
            raise DuplicateIdError(
                f"items {new_items.ids[present][:5].tolist()} are already indexed; expected new ids "
                "(nothing was added)"
            )
        vecs = self.model.encode_items(new_items, use_ids=False)
        merged = self.items.concat(new_items)  # validates before the index changes
        self.index.add(new_items.ids, vecs, space=self.model.space)
        self.items = merged
        self.last_add_seconds_ = time.perf_counter() - t0

    def encode_users(self, users: Any) -> npt.NDArray[np.float32]:
        """User vectors for ``users`` (all must be known, see :meth:`knows`)."""
        return self.model.encode_users(users, features=self._user_table())

    def recommend(
        self,
        users: Any,
        k: int,
        *,
        exclude_seen: bool = True,
        allow: npt.ArrayLike | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Top-``k`` item ids and scores ``(n_users, k)``, padded with ``-1``/``-inf``.

        Users the model cannot encode go to ``fallback`` (or raise :class:`UnknownIdError`).
        ``exclude_seen`` drops the user's training items; ``allow`` restricts the candidates.
        """
        k = check_k(k)
        check_flag(exclude_seen, "exclude_seen")
        ids = as_ids(users, name="users")
        check_result_size(ids.shape[0], k)
        ok = self.knows(ids)
        out_ids = np.full((ids.shape[0], k), -1, dtype=np.int64)
        out_sc = np.full((ids.shape[0], k), -np.inf, dtype=np.float32)
        if (~ok).any():
            if self.fallback is None:
                raise UnknownIdError(
                    f"users {ids[~ok][:5].tolist()} have neither history nor features; expected known users "
                    "(or construct the retriever with fallback=...)"
                )
            fi, fs = self.fallback.recommend(ids[~ok], k, exclude_seen=exclude_seen, allow=allow)
            out_ids[~ok], out_sc[~ok] = fi, fs
        rows = np.flatnonzero(ok)
        if rows.size == 0:
            return out_ids, out_sc
        q = self.encode_users(ids[rows])
        hist = self.model.history_
        pos = self.model.user_vocab_.positions(ids[rows], missing="mask")
        extra = int(self.history_size(ids[rows]).max()) if exclude_seen else 0
        allow_ids = None if allow is None else as_ids(allow, name="allow")
        found, scores = self.index.search(q, k + extra, allow=allow_ids)
        if exclude_seen and extra:
            vocab = self.model.item_vocab_.ids
            for j, r in enumerate(rows):
                p = pos[j]
                seen = vocab[hist.indices[hist.indptr[p] : hist.indptr[p + 1]]] if p >= 0 else vocab[:0]
                keep = (found[j] >= 0) & ~np.isin(found[j], seen)
                fi, fs = found[j][keep][:k], scores[j][keep][:k]
                out_ids[r, : fi.shape[0]], out_sc[r, : fs.shape[0]] = fi, fs
        else:
            out_ids[rows], out_sc[rows] = found[:, :k], scores[:, :k]
        return out_ids, out_sc


@dataclass(frozen=True)
class FallbackStage:
    """One source of a :class:`FallbackChain`.

    Args:
        name: reported in :attr:`RoutedRecommendations.sources`.
        recommender: anything with ``recommend(users, k, exclude_seen=..., allow=...)``; if it has
            ``knows(users)``, only users it knows are routed to it.
        min_history: minimum number of distinct training items a user needs for this stage.
    """

    name: str
    recommender: Any
    min_history: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInputError(f"FallbackStage.name must be a non-empty string, got {self.name!r}")
        if not hasattr(self.recommender, "recommend"):
            raise InvalidInputError(
                f"stage {self.name!r}: {type(self.recommender).__name__} has no recommend()"
            )
        if (
            isinstance(self.min_history, bool)
            or not isinstance(self.min_history, int)
            or self.min_history < 0
        ):
            raise InvalidInputError(
                f"stage {self.name!r}: min_history must be an int >= 0, got {self.min_history!r}"
            )


@dataclass(frozen=True)
class RoutedRecommendations:
    """Recommendations with the stage that answered each row."""

    ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    sources: npt.NDArray[np.str_]


class FallbackChain:
    """Route each user to the first stage that can serve them; report which one answered.

    A user goes to a stage when their number of distinct training items (from ``history``) is at
    least the stage's ``min_history`` and the stage ``knows`` them. Unknown user ids have no
    history and are never an error as long as some stage (typically
    :class:`~mlsys.recsys.Popularity` with ``min_history=0``) serves everyone; a user no stage can
    serve raises :class:`~mlsys.common.errors.UnknownIdError`. Scores of different stages are not
    comparable across rows.

    Args:
        stages: :class:`FallbackStage` s or ``(name, recommender, min_history)`` tuples, most
            specific first.
        history: the training interactions (for history sizes and to know who is new).

    Example:
        >>> from mlsys.recsys import EASE, Interactions, Popularity
        >>> x = Interactions(users=[1, 1, 2, 2, 3], items=[10, 11, 10, 12, 11])
        >>> chain = FallbackChain([("ease", EASE().fit(x), 2), ("popularity", Popularity().fit(x), 0)], history=x)
        >>> chain.route([1, 3, 42]).tolist()
        ['ease', 'popularity', 'popularity']
    """

    name = "fallback_chain"

    def __init__(
        self, stages: Sequence[FallbackStage | tuple[str, Any, int]], *, history: Interactions
    ) -> None:
        built = [s if isinstance(s, FallbackStage) else FallbackStage(*s) for s in stages]
        if not built:
            raise InvalidInputError("FallbackChain needs at least one stage")
        names = [s.name for s in built]
        if len(set(names)) != len(names):
            raise DuplicateIdError(f"stage names must be unique, got {names}")
        if not isinstance(history, Interactions):
            raise InvalidInputError(f"history must be Interactions, got {type(history).__name__}")
        self.stages = tuple(built)
        users, items = history.users, history.items
        pairs = np.unique(np.stack([users, items]), axis=1) if len(history) else np.zeros((2, 0), np.int64)
        uids, counts = np.unique(pairs[0], return_counts=True)
        self._users = IdIndex(uids)
        self._counts = counts.astype(np.int64)

    def history_size(self, users: Any) -> npt.NDArray[np.int64]:
        """Distinct training items per user (0 for unknown users)."""
        pos = self._users.positions(users, missing="mask")
        return np.where(pos >= 0, self._counts[np.maximum(pos, 0)], 0).astype(np.int64)

    def route(self, users: Any) -> npt.NDArray[np.str_]:
        """The stage name each user goes to (``""`` where no stage can serve them)."""
        ids = as_ids(users, name="users")
        n_hist = self.history_size(ids)
        out = np.full(ids.shape[0], "", dtype=object)
        todo = np.ones(ids.shape[0], dtype=bool)
        for stage in self.stages:
            ok = todo & (n_hist >= stage.min_history)
            if ok.any() and hasattr(stage.recommender, "knows"):
                sub = np.flatnonzero(ok)
                ok[sub] = np.asarray(stage.recommender.knows(ids[sub]), dtype=bool)
            out[ok] = stage.name
            todo &= ~ok
        return out.astype(np.str_)

    def recommend_with_sources(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: npt.ArrayLike | None = None
    ) -> RoutedRecommendations:
        """Recommendations and, per row, the name of the stage that answered."""
        k = check_k(k)
        check_flag(exclude_seen, "exclude_seen")
        ids = as_ids(users, name="users")
        check_result_size(ids.shape[0], k)
        src = self.route(ids)
        if (src == "").any():
            raise UnknownIdError(
                f"no stage can serve users {ids[src == ''][:5].tolist()}; add a stage with min_history=0 "
                "that serves everyone (e.g. Popularity)"
            )
        out_ids = np.full((ids.shape[0], k), -1, dtype=np.int64)
        out_sc = np.full((ids.shape[0], k), -np.inf, dtype=np.float32)
        for stage in self.stages:
            rows = np.flatnonzero(src == stage.name)
            if rows.size:
                fi, fs = stage.recommender.recommend(ids[rows], k, exclude_seen=exclude_seen, allow=allow)
                out_ids[rows], out_sc[rows] = fi, fs
        return RoutedRecommendations(out_ids, out_sc, src)

    def recommend(
        self, users: Any, k: int, *, exclude_seen: bool = True, allow: npt.ArrayLike | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Like :meth:`recommend_with_sources` without the sources (the common ``recommend`` contract)."""
        r = self.recommend_with_sources(users, k, exclude_seen=exclude_seen, allow=allow)
        return r.ids, r.scores
