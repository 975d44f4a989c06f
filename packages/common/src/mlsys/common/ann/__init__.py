"""One vector-index API over exact search, faiss and hnswlib.

Every backend implements :class:`VectorIndex` — ``add``, ``upsert``, ``remove``,
``search(queries, k, allow=..., deny=...)``, ``get_vectors``, ``ids``, ``save``/``load`` — is
bound to an :class:`~mlsys.common.spaces.EmbeddingSpace`, takes external int64 ids, returns
"higher is better" scores, and is chosen by name through :func:`make_index`.

Example:
    >>> import numpy as np
    >>> from mlsys.common.ann import make_index
    >>> from mlsys.common.spaces import EmbeddingSpace
    >>> index = make_index("exact", EmbeddingSpace("demo", "1", 3, metric="cosine"))
    >>> index.add([10, 11, 12], np.eye(3, dtype=np.float32))
    >>> ids, scores = index.search(np.array([[1.0, 0.1, 0.0]], dtype=np.float32), k=2, deny=[10])
    >>> ids.tolist()
    [[11, 12]]
"""

from mlsys.common.ann._base import BaseIndex, CommonConfig
from mlsys.common.ann._calibrate import (
    CalibrationResult,
    CalibrationStep,
    calibrate,
    mean_interval,
    per_query_recall,
    recall_at_k,
    search_knob,
)
from mlsys.common.ann._exact import ExactConfig, ExactIndex
from mlsys.common.ann._faiss import FaissConfig, FaissIndex
from mlsys.common.ann._hnsw import HNSW_NATIVE, HNSWConfig, HNSWIndex
from mlsys.common.ann._lock import RWLock
from mlsys.common.ann._persist import FORMAT_VERSION
from mlsys.common.ann._protocol import SearchResult, VectorIndex
from mlsys.common.ann._registry import index_class, list_indexes, load_index, make_index, register_index
from mlsys.common.ann._sharded import ShardedConfig, ShardedIndex, shard_of
from mlsys.common.ann._topk import exact_topk

__all__ = [
    "FORMAT_VERSION",
    "HNSW_NATIVE",
    "BaseIndex",
    "CalibrationResult",
    "CalibrationStep",
    "CommonConfig",
    "ExactConfig",
    "ExactIndex",
    "FaissConfig",
    "FaissIndex",
    "HNSWConfig",
    "HNSWIndex",
    "RWLock",
    "SearchResult",
    "ShardedConfig",
    "ShardedIndex",
    "VectorIndex",
    "calibrate",
    "exact_topk",
    "index_class",
    "list_indexes",
    "load_index",
    "make_index",
    "mean_interval",
    "per_query_recall",
    "recall_at_k",
    "register_index",
    "search_knob",
    "shard_of",
]
