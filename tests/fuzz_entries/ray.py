"""Fuzz entries for issue 17 (mlsys on Ray): the sharded index and the Ray helpers.

The Ray-backed classes need a running Ray cluster, which the fuzz suite does not start; their
bad-input contract is the conformance suite's (``tests/common/ann/test_conformance.py``, sharded
cases, on a local cluster) and ``tests/*/test_ray*.py``.
"""

_CLUSTER = (
    "exempt: needs a Ray cluster; bad input is tested on a local cluster in "
    "tests/common/ann/test_conformance.py (sharded cases) and tests/*/test_ray*.py"
)

MODULES = [
    "mlsys.common.distributed",
    "mlsys.recsys.distributed",
    "mlsys.vision.distributed",
    "mlsys.rag.distributed",
]

ENTRIES = {
    "mlsys.common.ann.ShardedIndex": _CLUSTER,
    "mlsys.common.ann.ShardedConfig": "exempt: validates against the backend registry; bad values tested in tests/common/ann/test_ray_sharded.py",
    "mlsys.common.ann.shard_of": "junk",
    "mlsys.common.distributed.ray_available": "junk",
    "mlsys.common.distributed.require_ray": "exempt: imports Ray (seconds); tested in tests/common/ann/test_ray_sharded.py",
    "mlsys.common.distributed.ensure_ray": _CLUSTER,
    "mlsys.common.distributed.ray_get": _CLUSTER,
    "mlsys.recsys.distributed.evaluate_recommender_ray": _CLUSTER,
    "mlsys.recsys.distributed.fit_two_tower_ray": _CLUSTER,
    "mlsys.vision.distributed.RayImageClassifier": "exempt: builds a model from a factory; bad factories and files tested in tests/vision/test_ray_inference.py",
    "mlsys.vision.distributed.classify_files_ray": _CLUSTER,
    "mlsys.rag.distributed.ingest_ray": _CLUSTER,
    "mlsys.rag.distributed.RayEmbedder": "exempt: wraps an embedder (a library object); tested in tests/rag/test_ray_ingest.py",
    "mlsys.rag.distributed.RayIngestReport": "exempt: a result record built by ingest_ray",
}
