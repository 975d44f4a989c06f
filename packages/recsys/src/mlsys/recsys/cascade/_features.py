"""Retrieval sources and ranking features for :class:`~mlsys.recsys.cascade._ltr.LearnedRanker`.

:class:`Signals` is fitted on one binary user-item matrix (the training split, or the training split
minus a validation fold) and produces, for a batch of users:

* the dense scores of every retrieval source (EASE, ItemKNN with a per-target neighbourhood,
  implicit ALS when installed, popularity), seen items masked;
* a feature matrix for any ``(user, candidate item)`` pairs: per source the raw score, the per-user
  rank, the per-user z-score and the ratio to the user's best score (scale-free, so that a ranker
  trained on sources fit on less data still reads sources fit on more data), plus signals the
  sources do not encode: item popularity and its share inside the user's active time window,
  item recency relative to the user, co-occurrence with the user's last items, user history
  length and genre entropy, genre overlap, release-year bucket, and popularity in the user's
  demographic bucket.

Everything here is private; the public surface is :class:`~mlsys.recsys.cascade._ltr.LearnedRanker`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from mlsys.recsys._baselines import ease_weights
from mlsys.recsys._data import FeatureTable, IdIndex

__all__ = ["SignalSettings", "Signals", "ease_weights", "fit_als", "per_target_knn"]

_DAY = 86_400.0
# implicit's own ALS defaults: what an untuned ALS source (and a ranker saved before tuning) uses
ALS_DEFAULT_ALPHA = 1.0
ALS_DEFAULT_REGULARIZATION = 0.01


@dataclass(frozen=True)
class SignalSettings:
    """What :class:`Signals` fits (a view of the ranker's config)."""

    ease_l2: float
    knn_neighbors: int
    als_factors: int
    als_iterations: int
    recent_items: int
    seq_window: int
    time_bins: int
    item_genre_feature: str | None
    item_year_feature: str | None
    user_features: tuple[str, ...]
    seed: int
    num_threads: int
    als_regularization: float = ALS_DEFAULT_REGULARIZATION
    als_alpha: float = ALS_DEFAULT_ALPHA


def cosine_similarity(x: sp.csr_matrix) -> npt.NDArray[np.float32]:
    """Dense item-item cosine similarity of the binary matrix ``x``, zero diagonal."""
    co = (x.T @ x).toarray().astype(np.float32)
    norms = np.sqrt(np.diag(co).copy())
    inv = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    sim = co * inv[:, None] * inv[None, :]
    np.fill_diagonal(sim, 0.0)
    return sim


def per_target_knn(sim: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.float32]:
    """Keep, for each *target* item (column), its ``k`` most similar source items (ties: lower row first)."""
    n = sim.shape[0]
    if k >= n:
        return sim.copy()
    # stable order on (-sim, row) makes the k-th-neighbour tie-break explicit
    order = np.argsort(-sim, axis=0, kind="stable")[:k]
    out = np.zeros_like(sim)
    cols = np.broadcast_to(np.arange(n), order.shape)
    out[order, cols] = sim[order, cols]
    return out


def _per_user_stats(scores: npt.NDArray[np.float32]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std and max of each row over its finite entries."""
    finite = np.isfinite(scores)
    cnt = np.maximum(finite.sum(axis=1, keepdims=True), 1)
    z = np.where(finite, scores, 0.0).astype(np.float64)
    mean = z.sum(axis=1, keepdims=True) / cnt
    var = (np.where(finite, (z - mean) ** 2, 0.0)).sum(axis=1, keepdims=True) / cnt
    mx = np.where(finite, scores, -np.inf).max(axis=1, keepdims=True)
    mx = np.where(np.isfinite(mx), mx, 0.0)
    return mean, np.sqrt(var) + 1e-9, mx


def _ranks(scores: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """0-based per-row rank of every column (best = 0; ties by column position)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    ranks = np.empty(scores.shape, dtype=np.float32)
    rows = np.arange(scores.shape[0])[:, None]
    ranks[rows, order] = np.arange(scores.shape[1], dtype=np.float32)[None, :]
    return ranks


def fit_als(
    x: sp.csr_matrix,
    factors: int,
    iterations: int,
    regularization: float,
    alpha: float,
    seed: int,
    num_threads: int,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """``(user_factors, item_factors)`` of implicit's ALS (Hu, Koren & Volinsky 2008) on the binary
    matrix ``x``: confidence ``1 + alpha * x``, L2 penalty ``regularization`` on both factor sets."""
    from mlsys.common._optional import import_optional

    als = import_optional("implicit.cpu.als", package="implicit")
    model = als.AlternatingLeastSquares(
        factors=factors,
        iterations=iterations,
        regularization=regularization,
        alpha=alpha,
        random_state=seed,
        num_threads=max(num_threads, 1),
    )
    model.fit(x.astype(np.float32).tocsr(), show_progress=False)
    return np.asarray(model.user_factors, np.float32), np.asarray(model.item_factors, np.float32)


class Signals:
    """Sources and features fitted on one binary matrix ``x`` over fixed user and item indexes.

    Args:
        x: binary ``(n_users, n_items)`` CSR training matrix.
        user_ts: ``(first, last, median)`` training timestamp of each user row (seconds).
        events: ``(user position, item position, timestamp)`` of every training event in ``x``.
        user_index, item_index: the id maps of the rows and columns.
        users, items: optional feature tables (demographics, genres, release year).
        settings: what to fit.
        time_edges: bin edges of the training timestamps for the time features.
        als: ``(user_factors, item_factors)`` of an already fitted ALS (a loaded model) instead of
            fitting one; used only when ``settings.als_factors > 0``.

    The inputs are kept (``events``, ``user_index``, ``item_index``, ``users``, ``items``) so that a
    fitted ranker can be saved and rebuilt from them.
    """

    def __init__(
        self,
        x: sp.csr_matrix,
        user_ts: npt.NDArray[np.float64],
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
        user_index: IdIndex,
        item_index: IdIndex,
        users: FeatureTable | None,
        items: FeatureTable | None,
        settings: SignalSettings,
        time_edges: npt.NDArray[np.float64],
        *,
        als: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        self.x = x
        self.s = settings
        self.events, self.user_index, self.item_index = events, user_index, item_index
        self.users, self.items = users, items
        n_users, n_items = x.shape
        self.user_ts = user_ts
        self.sources: list[str] = ["ease", "knn", "pop"]
        self.ease_b = ease_weights(x, settings.ease_l2)
        sim = cosine_similarity(x)
        self.sim = sim
        self.knn = per_target_knn(sim, settings.knn_neighbors)
        counts = np.asarray(x.sum(axis=0), dtype=np.float64).ravel()
        self.pop = counts
        self.log_pop = np.log1p(counts).astype(np.float32)
        self.user_len = np.diff(x.indptr).astype(np.float32)
        # RP3beta (Paudel et al. 2017): two-step random walk item -> user -> item, divided by pop^0.5
        xr = sp.diags(1.0 / np.maximum(self.user_len, 1.0)) @ x
        xc = sp.diags(1.0 / np.maximum(counts, 1.0)) @ x.T.tocsr()
        w = np.asarray((xc @ xr).todense(), dtype=np.float32)
        w /= np.power(np.maximum(counts, 1.0), 0.5).astype(np.float32)[None, :]
        np.fill_diagonal(w, 0.0)
        self.rp3 = w
        self.sources.append("rp3")
        # user-based kNN: cosine between users, 50 nearest neighbours per user
        uu = np.asarray((x @ x.T).todense(), dtype=np.float32)
        un = np.sqrt(np.maximum(np.diag(uu).copy(), 1e-12))
        uu = (uu / un[:, None] / un[None, :]).astype(np.float32)
        np.fill_diagonal(uu, 0.0)
        kk = min(50, max(n_users - 1, 1))
        if kk < n_users:
            cut = -np.partition(-uu, kk - 1, axis=1)[:, kk - 1 : kk]
            uu = np.where(uu >= cut, uu, 0.0).astype(np.float32)
        self.user_sim = sp.csr_matrix(uu)
        self.sources.append("uknn")
        self.als: tuple[np.ndarray, np.ndarray] | None = None
        if settings.als_factors > 0:
            self.als = self._fit_als(x) if als is None else als
            self.sources.append("als")
        # time: cumulative item counts over time bins; user windows
        _, ipos, its = events
        self.edges = time_edges
        n_bins = time_edges.shape[0] + 1
        b = np.searchsorted(time_edges, its, side="right")
        hist = np.zeros((n_items, n_bins), dtype=np.float64)
        np.add.at(hist, (ipos, b), 1.0)
        self.cum = np.concatenate([np.zeros((n_items, 1)), np.cumsum(hist, axis=1)], axis=1).astype(
            np.float32
        )
        self.cum_total = self.cum.sum(axis=0)
        # time-localised popularity: p(item | time bin), weighted by where the user's events fall
        self.p_item_bin = (
            (hist / np.maximum(hist.sum(axis=0, keepdims=True), 1.0)).T.astype(np.float32).copy()
        )
        upos_e = events[0]
        w = np.zeros((n_users, n_bins), dtype=np.float64)
        np.add.at(w, (upos_e, b), 1.0)
        self.user_bins = (w / np.maximum(w.sum(axis=1, keepdims=True), 1.0)).astype(np.float32)
        self.sources.append("tpop")
        first = np.full(n_items, np.inf)
        last = np.full(n_items, -np.inf)
        np.minimum.at(first, ipos, its)
        np.maximum.at(last, ipos, its)
        med_all = float(np.median(its)) if its.size else 0.0
        self.item_first = np.where(np.isfinite(first), first, med_all)
        self.item_last = np.where(np.isfinite(last), last, med_all)
        self.item_mean_ts = np.where(
            counts > 0, np.bincount(ipos, weights=its, minlength=n_items) / np.maximum(counts, 1), med_all
        )
        # sequence co-occurrence: pairs of items within `seq_window` positions of one user's timeline
        self.seq = self._sequence_cooccurrence(events, n_items, counts)
        self.sources.append("seq")
        # recent items of each user (by time, last `recent_items`) as a sparse matrix
        self.recent = self._recent_matrix(events, n_users, n_items)
        # genres
        self.genres: np.ndarray | None = None
        self.user_genre: np.ndarray | None = None
        self.user_genre_entropy = np.zeros(n_users, dtype=np.float32)
        if items is not None and settings.item_genre_feature is not None:
            g = self._item_column(items, item_index, settings.item_genre_feature)
            if g is not None and g.ndim == 2:
                g = g.astype(np.float32)
                self.genres = g / np.maximum(g.sum(axis=1, keepdims=True), 1.0)
                prof = np.asarray(x @ g, dtype=np.float64)
                prof = prof / np.maximum(prof.sum(axis=1, keepdims=True), 1e-12)
                self.user_genre = prof.astype(np.float32)
                with np.errstate(divide="ignore", invalid="ignore"):
                    ent = -np.where(prof > 0, prof * np.log(prof), 0.0).sum(axis=1)
                self.user_genre_entropy = ent.astype(np.float32)
        self.year = np.zeros(n_items, dtype=np.float32)
        self.has_year = False
        if items is not None and settings.item_year_feature is not None:
            y = self._item_column(items, item_index, settings.item_year_feature)
            if y is not None and y.ndim == 1:
                self.year = y.astype(np.float32)
                self.has_year = True
        # demographic bucket popularity (shrunk towards global)
        self.user_bucket = np.zeros(n_users, dtype=np.int64)
        self.bucket_pop: np.ndarray | None = None
        self.user_demo = np.zeros((n_users, 0), dtype=np.float32)
        if users is not None and settings.user_features:
            cols = self._user_columns(users, user_index, settings.user_features)
            if cols is not None:
                self.user_demo = cols.astype(np.float32)
                key = np.zeros(n_users, dtype=np.int64)
                for j in range(cols.shape[1]):
                    key = key * (int(cols[:, j].max()) + 2) + (cols[:, j] + 1)
                uniq, inv = np.unique(key, return_inverse=True)
                self.user_bucket = inv.astype(np.int64)
                onehot = sp.csr_matrix(
                    (np.ones(n_users, np.float32), (inv, np.arange(n_users))), shape=(uniq.shape[0], n_users)
                )
                bc = np.asarray((onehot @ x).todense(), dtype=np.float64)
                bn = np.asarray(onehot.sum(axis=1), dtype=np.float64)
                glob = counts / max(n_users, 1)
                shrink = 10.0
                self.bucket_pop = ((bc + shrink * glob[None, :]) / (bn + shrink)).astype(np.float32)
        self.user_mean_pop = np.asarray(
            (x @ self.log_pop[:, None]).ravel() / np.maximum(self.user_len, 1.0), dtype=np.float32
        )

    # -- fitting helpers -------------------------------------------------------------------------
    def _fit_als(self, x: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        s = self.s
        return fit_als(
            x, s.als_factors, s.als_iterations, s.als_regularization, s.als_alpha, s.seed, s.num_threads
        )

    def _sequence_cooccurrence(
        self,
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
        n_items: int,
        counts: npt.NDArray[np.float64],
    ) -> npt.NDArray[np.float32]:
        upos, ipos, ts = events
        order = np.lexsort((ipos, ts, upos))
        u, i = upos[order], ipos[order]
        rows, cols = [], []
        for d in range(1, self.s.seq_window + 1):
            same = u[d:] == u[:-d]
            rows.append(i[:-d][same])
            cols.append(i[d:][same])
        r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        m = sp.coo_matrix((np.ones(r.shape[0], np.float32), (r, c)), shape=(n_items, n_items)).toarray()
        m = m + m.T
        np.fill_diagonal(m, 0.0)
        inv = np.where(counts > 0, 1.0 / np.sqrt(np.maximum(counts, 1.0)), 0.0).astype(np.float32)
        return (m * inv[:, None] * inv[None, :]).astype(np.float32)

    def _recent_matrix(
        self,
        events: tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.float64]],
        n_users: int,
        n_items: int,
    ) -> sp.csr_matrix:
        upos, ipos, ts = events
        order = np.lexsort((ipos, -ts, upos))
        u, i = upos[order], ipos[order]
        start = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
        rank = np.arange(u.shape[0]) - np.repeat(start, np.diff(np.r_[start, u.shape[0]]))
        keep = rank < self.s.recent_items
        m = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (u[keep], i[keep])), shape=(n_users, n_items)
        )
        m.sum_duplicates()
        m.data[:] = 1.0
        cnt = np.maximum(np.diff(m.indptr), 1).astype(np.float32)
        return sp.csr_matrix(sp.diags(1.0 / cnt) @ m)

    @staticmethod
    def _item_column(items: FeatureTable, item_index: IdIndex, name: str) -> np.ndarray | None:
        if name not in {s.name for s in items.specs}:
            return None
        pos = items.index.positions(item_index.ids, missing="mask")
        col = items.column(name)
        out = np.zeros((len(item_index), *col.shape[1:]), dtype=np.float64)
        ok = pos >= 0
        out[ok] = col[pos[ok]]
        return out

    @staticmethod
    def _user_columns(users: FeatureTable, user_index: IdIndex, names: tuple[str, ...]) -> np.ndarray | None:
        specs = {s.name: s for s in users.specs}
        wanted = [n for n in names if n in specs and specs[n].kind == "categorical"]
        if not wanted:
            return None
        pos = users.index.positions(user_index.ids, missing="mask")
        out = np.full((len(user_index), len(wanted)), -1, dtype=np.int64)
        ok = pos >= 0
        for j, n in enumerate(wanted):
            out[ok, j] = users.column(n)[pos[ok]]
        return out

    # -- serving ---------------------------------------------------------------------------------
    def source_scores(
        self, upos: npt.NDArray[np.int64], seen: sp.csr_matrix | None = None
    ) -> dict[str, npt.NDArray[np.float32]]:
        """Dense scores ``(len(upos), n_items)`` of every source, the users' seen items set to ``-inf``.

        ``seen`` (rows of ``upos``) replaces the fitted matrix's rows as what counts as seen: a
        fold's sources are fit without that fold's items, which are still the user's."""
        xu = self.x[upos]
        out: dict[str, npt.NDArray[np.float32]] = {
            "ease": np.asarray(xu @ self.ease_b, dtype=np.float32),
            "knn": np.asarray(xu @ self.knn, dtype=np.float32),
            "pop": np.broadcast_to(self.log_pop, (upos.shape[0], self.log_pop.shape[0])).copy(),
            "seq": np.asarray(xu @ self.seq, dtype=np.float32),
            "tpop": self.user_bins[upos] @ self.p_item_bin,
            "rp3": np.asarray(xu @ self.rp3, dtype=np.float32),
            "uknn": np.asarray((self.user_sim[upos] @ self.x).todense(), dtype=np.float32),
        }
        if self.als is not None:
            uf, itf = self.als
            out["als"] = (uf[upos] @ itf.T).astype(np.float32)
        coo = (xu if seen is None else seen).tocoo()
        for v in out.values():
            v[coo.row, coo.col] = -np.inf
        return out

    def feature_names(self) -> list[str]:
        """Column names of :meth:`features`, in order."""
        names = []
        for s in self.sources:
            names += [f"{s}_score", f"{s}_rank", f"{s}_z", f"{s}_ratio"]
        names += [
            "item_log_pop", "window_share", "window_lift", "item_first_days", "item_last_days",
            "item_mean_days", "recent_cooc", "recent_seq", "recent_cooc_max", "user_log_len", "user_mean_pop",
            "pop_vs_user",
        ]  # fmt: skip
        if self.genres is not None:
            names += ["genre_overlap", "user_genre_entropy"]
        if self.has_year:
            names += ["item_year"]
        if self.bucket_pop is not None:
            names += ["demo_pop", "demo_lift"]
            names += [f"user_{n}" for n in range(self.user_demo.shape[1])]
        return names

    def features(
        self,
        upos: npt.NDArray[np.int64],
        cand: npt.NDArray[np.int64],
        scores: dict[str, npt.NDArray[np.float32]] | None = None,
    ) -> npt.NDArray[np.float32]:
        """Features ``(len(upos), C, F)`` of candidate item positions ``cand`` (``-1`` rows are zeros)."""
        if scores is None:
            scores = self.source_scores(upos)
        b, c = cand.shape
        valid = cand >= 0
        cp = np.where(valid, cand, 0)
        cols: list[npt.NDArray[np.float32]] = []
        for s in self.sources:
            sc = scores[s]
            mean, std, mx = _per_user_stats(sc)
            g = np.take_along_axis(sc, cp, axis=1).astype(np.float64)
            g = np.where(np.isfinite(g), g, mean)
            ranks = np.take_along_axis(_ranks(sc), cp, axis=1)
            cols += [
                g.astype(np.float32),
                ranks,
                ((g - mean) / std).astype(np.float32),
                (g / np.where(np.abs(mx) > 1e-12, mx, 1.0)).astype(np.float32),
            ]
        # time window of each user: bins [lo, hi]
        first, last, med = self.user_ts[upos, 0], self.user_ts[upos, 1], self.user_ts[upos, 2]
        lo = np.searchsorted(self.edges, first, side="right")
        hi = np.searchsorted(self.edges, last, side="right") + 1
        win = self.cum[cp, hi[:, None]] - self.cum[cp, lo[:, None]]
        win_total = np.maximum(self.cum_total[hi] - self.cum_total[lo], 1.0)[:, None]
        share = win / win_total
        glob_share = (self.pop[cp] / max(float(self.pop.sum()), 1.0)).astype(np.float32)
        cols += [
            self.log_pop[cp],
            share.astype(np.float32),
            (share / np.maximum(glob_share, 1e-9)).astype(np.float32),
            ((self.item_first[cp] - last[:, None]) / _DAY).astype(np.float32),
            ((self.item_last[cp] - first[:, None]) / _DAY).astype(np.float32),
            ((self.item_mean_ts[cp] - med[:, None]) / _DAY).astype(np.float32),
        ]
        rec = self.recent[upos]
        cooc = np.asarray(rec @ self.sim, dtype=np.float32)
        cols.append(np.take_along_axis(cooc, cp, axis=1))
        seq_recent = np.asarray(rec @ self.seq, dtype=np.float32)
        cols.append(np.take_along_axis(seq_recent, cp, axis=1))
        # max similarity to any recent item
        cmax = np.zeros((b, c), dtype=np.float32)
        for r in range(b):
            items_r = rec.indices[rec.indptr[r] : rec.indptr[r + 1]]
            if items_r.size:
                cmax[r] = self.sim[np.ix_(items_r, cp[r])].max(axis=0)
        cols.append(cmax)
        ulen = self.user_len[upos]
        cols += [
            np.broadcast_to(np.log1p(ulen)[:, None], (b, c)).astype(np.float32),
            np.broadcast_to(self.user_mean_pop[upos][:, None], (b, c)).astype(np.float32),
            (self.log_pop[cp] - self.user_mean_pop[upos][:, None]).astype(np.float32),
        ]
        if self.genres is not None and self.user_genre is not None:
            ov = np.einsum("bg,bcg->bc", self.user_genre[upos], self.genres[cp])
            cols += [
                ov.astype(np.float32),
                np.broadcast_to(self.user_genre_entropy[upos][:, None], (b, c)).astype(np.float32),
            ]
        if self.has_year:
            cols.append(self.year[cp])
        if self.bucket_pop is not None:
            bp = self.bucket_pop[self.user_bucket[upos][:, None], cp]
            gp = (self.pop[cp] / max(self.x.shape[0], 1)).astype(np.float32)
            cols += [bp, (bp / np.maximum(gp, 1e-6)).astype(np.float32)]
            for j in range(self.user_demo.shape[1]):
                cols.append(np.broadcast_to(self.user_demo[upos, j][:, None], (b, c)).astype(np.float32))
        out = np.stack(cols, axis=2).astype(np.float32)
        out[~valid] = 0.0
        return out
