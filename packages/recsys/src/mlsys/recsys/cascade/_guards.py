"""Serving guards against the boring failures: stale item embeddings and silent embedding drift.

:class:`EmbeddingRegistry` remembers, per item, which embedding space produced its vector
(model name, version/weights hash, dim: :attr:`EmbeddingSpace.space_id`), a hash of the item
features it was computed from, and when. :meth:`~EmbeddingRegistry.stale_items` lists items whose
vector came from another model version, from features that have since changed, or is older than
a maximum age; :meth:`~EmbeddingRegistry.count_served` keeps the served / stale-served counters a
service exports. :func:`drift_report` compares old and new vectors of the same items (norm and
cosine shift) before a swap.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common._display import TabularDisplay
from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.common.spaces import EmbeddingSpace
from mlsys.common.validation import as_array, as_ids, check_unique
from mlsys.recsys._data import FeatureTable

__all__ = ["DriftReport", "EmbeddingRegistry", "drift_report", "feature_hashes"]

IntArray = npt.NDArray[np.int64]


def feature_hashes(table: FeatureTable, ids: Any | None = None) -> npt.NDArray[np.uint64]:
    """A 64-bit content hash of each item's feature row (every column, in spec order).

    Example:
        >>> import numpy as np
        >>> from mlsys.recsys import FeatureSpec, FeatureTable
        >>> t = FeatureTable([1, 2], {"g": np.array([0, 1])}, [FeatureSpec("g", "categorical", 2)])
        >>> h = feature_hashes(t)
        >>> bool(h[0] != h[1]), feature_hashes(t, [2])[0] == h[1]
        (True, np.True_)
    """
    if not isinstance(table, FeatureTable):
        raise InvalidInputError(f"table must be a FeatureTable, got {type(table).__name__}")
    rows = table if ids is None else table.rows(ids)
    cols = [np.ascontiguousarray(rows.column(s.name)) for s in rows.specs]
    out = np.empty(rows.n, dtype=np.uint64)
    for i in range(rows.n):
        h = hashlib.blake2b(digest_size=8)
        for c in cols:
            h.update(np.ascontiguousarray(c[i]).tobytes())
        out[i] = np.frombuffer(h.digest(), dtype=np.uint64)[0]
    return out


class EmbeddingRegistry:
    """Per item: the embedding space, feature hash and time of its current vector.

    Example:
        >>> import numpy as np
        >>> from mlsys.common import EmbeddingSpace
        >>> v1 = EmbeddingSpace("tt", "v1", 8, metric="ip")
        >>> reg = EmbeddingRegistry()
        >>> reg.record([1, 2, 3], space=v1, feature_hashes=[10, 20, 30], embedded_at=100.0)
        >>> reg.stale_items(space=EmbeddingSpace("tt", "v2", 8, metric="ip")).tolist()  # new model version
        [1, 2, 3]
        >>> reg.stale_items(space=v1, feature_hashes=([2], [21])).tolist()  # item 2's features changed
        [2]
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids: IntArray = np.zeros(0, np.int64)  # sorted
        self._space: npt.NDArray[np.int32] = np.zeros(0, np.int32)  # index into _spaces
        self._fhash: npt.NDArray[np.uint64] = np.zeros(0, np.uint64)
        self._time: npt.NDArray[np.float64] = np.zeros(0, np.float64)
        self._spaces: list[str] = []
        self.served = 0
        self.stale_served = 0

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __repr__(self) -> str:
        return f"EmbeddingRegistry(items={len(self)}, spaces={len(self._spaces)}, served={self.served})"

    def _space_code(self, space: EmbeddingSpace | str) -> int:
        sid = space.space_id if isinstance(space, EmbeddingSpace) else str(space)
        if sid not in self._spaces:
            self._spaces.append(sid)
        return self._spaces.index(sid)

    def record(
        self,
        item_ids: Any,
        *,
        space: EmbeddingSpace | str,
        feature_hashes: Any | None = None,
        embedded_at: float | Any | None = None,
    ) -> None:
        """Record (or overwrite) the provenance of ``item_ids``' vectors. Validated before any change."""
        ids = as_ids(item_ids, name="item_ids")
        check_unique(ids, name="item_ids")
        n = ids.shape[0]
        fh = (
            np.zeros(n, np.uint64)
            if feature_hashes is None
            else as_array(feature_hashes, dtype=np.uint64, name="feature_hashes")
        )
        if fh.shape != (n,):
            raise InvalidInputError(f"feature_hashes has shape {fh.shape}, expected ({n},)")
        t = as_array(
            time.time() if embedded_at is None else embedded_at, dtype=np.float64, name="embedded_at"
        )
        if t.ndim > 1 or t.shape not in ((), (1,), (n,)):
            raise InvalidInputError(
                f"embedded_at must be Unix seconds (a number or {n} numbers), got shape {t.shape}"
            )
        t = np.broadcast_to(t, (n,))
        if not np.isfinite(t).all():
            raise InvalidInputError("embedded_at must be finite (Unix seconds)")
        with self._lock:
            code = self._space_code(space)
            pos = np.searchsorted(self._ids, ids)
            known = (
                (pos < self._ids.shape[0]) & (self._ids[np.minimum(pos, max(len(self) - 1, 0))] == ids)
                if len(self)
                else np.zeros(n, bool)
            )
            kp = pos[known]
            self._space[kp] = code
            self._fhash[kp] = fh[known]
            self._time[kp] = t[known]
            new = ~known
            if new.any():
                ids_all = np.concatenate([self._ids, ids[new]])
                order = np.argsort(ids_all, kind="stable")
                self._ids = ids_all[order]
                self._space = np.concatenate([self._space, np.full(int(new.sum()), code, np.int32)])[order]
                self._fhash = np.concatenate([self._fhash, fh[new]])[order]
                self._time = np.concatenate([self._time, t[new]])[order]

    def stale_items(
        self,
        *,
        space: EmbeddingSpace | str | None = None,
        feature_hashes: tuple[Any, Any] | None = None,
        max_age_s: float | None = None,
        now: float | None = None,
        items: Any | None = None,
    ) -> IntArray:
        """Items (all recorded, or ``items``) whose vector is stale: from another ``space``, from
        features whose hash differs from ``feature_hashes=(ids, hashes)``, or older than
        ``max_age_s``. Items never recorded count as stale when ``items`` names them."""
        with self._lock:
            ids, sp, fh, t, spaces = self._ids, self._space, self._fhash, self._time, list(self._spaces)
        stale = np.zeros(ids.shape[0], bool)
        if space is not None:
            sid = space.space_id if isinstance(space, EmbeddingSpace) else str(space)
            code = spaces.index(sid) if sid in spaces else -1
            stale |= sp != code
        if feature_hashes is not None:
            f_ids = as_ids(feature_hashes[0], name="feature_hashes ids")
            f_h = np.asarray(feature_hashes[1]).astype(np.uint64)
            if f_h.shape != f_ids.shape:
                raise InvalidInputError("feature_hashes must be (ids, hashes) of the same length")
            pos = np.searchsorted(ids, f_ids)
            ok = pos < ids.shape[0]
            ok[ok] &= ids[pos[ok]] == f_ids[ok]
            changed = np.zeros(ids.shape[0], bool)
            changed[pos[ok]] = fh[pos[ok]] != f_h[ok]
            stale |= changed
        if max_age_s is not None:
            if not max_age_s >= 0:
                raise InvalidInputError(f"max_age_s must be >= 0, got {max_age_s!r}")
            stale |= ((time.time() if now is None else now) - t) > max_age_s
        if items is None:
            return ids[stale]
        want = as_ids(items, name="items")
        pos = np.searchsorted(ids, want)
        known = pos < ids.shape[0]
        known[known] &= ids[pos[known]] == want[known]
        is_stale = ~known
        is_stale[known] = stale[pos[known]]
        return want[is_stale]

    def count_served(self, served_ids: Any, **stale_kw: Any) -> float:
        """Add a served slate to the counters; returns the stale fraction of these items (-1 ignored)."""
        ids = np.asarray(served_ids, dtype=np.int64).ravel()
        ids = ids[ids >= 0]
        n_stale = self.stale_items(items=ids, **stale_kw).shape[0] if ids.size else 0
        with self._lock:
            self.served += int(ids.size)
            self.stale_served += int(n_stale)
        return n_stale / ids.size if ids.size else 0.0

    def counters(self) -> dict[str, float]:
        """``served``, ``stale_served`` and ``stale_rate`` since creation."""
        with self._lock:
            return {
                "served": self.served,
                "stale_served": self.stale_served,
                "stale_rate": self.stale_served / self.served if self.served else 0.0,
            }


@dataclass(frozen=True)
class DriftReport(TabularDisplay):
    """How far new vectors moved from old ones, item by item (same ids, same dim).

    ``cosine_*``: cosine similarity between each item's old and new vector; ``norm_ratio_*``: new
    norm / old norm. ``moved`` counts items whose cosine fell below the report's threshold.

    Displays as a one-row HTML table in a notebook; :meth:`to_pandas` gives that row.
    """

    _pandas_extra = "mlsys-recsys[pandas]"

    n: int
    cosine_mean: float
    cosine_p05: float
    cosine_min: float
    norm_ratio_mean: float
    norm_ratio_p05: float
    norm_ratio_p95: float
    threshold: float
    moved: int

    def to_dict(self) -> dict[str, float]:
        """The report as a JSON-serialisable dict."""
        return dict(self.__dict__)


def drift_report(old_vectors: Any, new_vectors: Any, *, threshold: float = 0.9) -> DriftReport:
    """Compare two embeddings of the same items row by row (e.g. before hot-swapping a model).

    Example:
        >>> import numpy as np
        >>> old = np.eye(3, dtype=np.float32)
        >>> r = drift_report(old, 2 * old)
        >>> r.cosine_mean, r.norm_ratio_mean, r.moved
        (1.0, 2.0, 0)
    """
    old = as_array(old_vectors, dtype=np.float64, name="old_vectors")
    new = as_array(new_vectors, dtype=np.float64, name="new_vectors")
    if old.ndim != 2 or old.shape[0] == 0:
        raise InvalidInputError(f"old_vectors must be a non-empty (n, dim) array, got shape {old.shape}")
    if new.shape != old.shape:
        raise DimensionMismatchError(
            f"new_vectors have shape {new.shape}, expected {old.shape} (same items, same dim)"
        )
    if not (np.isfinite(old).all() and np.isfinite(new).all()):
        raise InvalidInputError("vectors hold NaN or inf")
    no, nn = np.linalg.norm(old, axis=1), np.linalg.norm(new, axis=1)
    if (no == 0).any() or (nn == 0).any():
        raise InvalidInputError("a zero vector has no direction to compare")
    cos = np.einsum("ij,ij->i", old, new) / (no * nn)
    ratio = nn / no
    return DriftReport(
        n=int(old.shape[0]),
        cosine_mean=float(cos.mean()),
        cosine_p05=float(np.percentile(cos, 5)),
        cosine_min=float(cos.min()),
        norm_ratio_mean=float(ratio.mean()),
        norm_ratio_p05=float(np.percentile(ratio, 5)),
        norm_ratio_p95=float(np.percentile(ratio, 95)),
        threshold=threshold,
        moved=int((cos < threshold).sum()),
    )
