"""Batch inference on Ray Data (the optional extra ``mlsys-vision[ray]``).

:class:`RayImageClassifier` is the :class:`~mlsys.vision.InferencePipeline` as a Ray Data
callable class: each actor builds one pipeline (one model: torch or an ONNX Runtime session) from
a picklable factory, and every batch of file paths is decoded, preprocessed and classified there.
A file that cannot be read or decoded becomes an error row (``ok=False``, its error type and
message) — never a failed job, and the other images of its batch are still classified.
:func:`classify_files_ray` runs the whole thing over a list of files and returns one row per
file, in input order.

Example:
    >>> import ray  # doctest: +SKIP
    >>> ray.init(num_cpus=2)  # doctest: +SKIP
    >>> out = classify_files_ray(paths, make_pipeline, batch_size=64, concurrency=2)  # doctest: +SKIP
    >>> out["top_ids"][out["ok"]]  # (n_ok, top_k)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.distributed import ensure_ray
from mlsys.common.errors import InvalidInputError
from mlsys.common.validation import check_k
from mlsys.vision._pipeline import ImageError, InferencePipeline, Prediction

__all__ = ["RayImageClassifier", "classify_files_ray"]

RAY_EXTRA = "mlsys-vision[ray]"
COLUMNS = ("index", "path", "ok", "top_ids", "top_probs", "label", "error_type", "error")


class RayImageClassifier:
    """A Ray Data callable class: ``{"index", "path"}`` batches in, prediction/error rows out.

    Args:
        pipeline_factory: a picklable zero-argument callable returning an
            :class:`~mlsys.vision.InferencePipeline` (called once per actor: one model per actor;
            an ONNX Runtime session, which cannot be pickled, is created there).

    Output columns: ``index`` and ``path`` (as given), ``ok`` (bool), ``top_ids`` ``(n, top_k)``
    int64 and ``top_probs`` float32 (``-1``/NaN on error rows), ``label`` (top-1 label, ``""`` on
    error), ``error_type`` and ``error`` (``""`` on good rows).

    Example:
        >>> clf = RayImageClassifier(make_pipeline)  # doctest: +SKIP
        >>> clf({"index": np.arange(2), "path": np.array(["a.png", "broken.png"])})["ok"]  # doctest: +SKIP
        array([ True, False])
    """

    def __init__(self, pipeline_factory: Callable[[], InferencePipeline]) -> None:
        self.pipeline = pipeline_factory()
        if not isinstance(self.pipeline, InferencePipeline):
            raise InvalidInputError(
                f"pipeline_factory must return an InferencePipeline, got {type(self.pipeline).__name__}"
            )

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        paths = [str(p) for p in batch["path"].tolist()]
        n, k = len(paths), self.pipeline.top_k
        top_ids = np.full((n, k), -1, dtype=np.int64)
        top_probs = np.full((n, k), np.nan, dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        label = [""] * n
        err_type = [""] * n
        err = [""] * n
        try:
            results: list[Prediction | ImageError] = self.pipeline.predict_batch(
                paths, on_error="record"
            ).rows()
        except Exception:  # an unexpected failure: isolate it to its image, one at a time
            results = []
            for j, p in enumerate(paths):
                try:
                    results.extend(self.pipeline.predict_batch([p], on_error="record").rows())
                except Exception as exc:  # this image's error row
                    results.append(ImageError(j, p, type(exc).__name__, str(exc)))
        for i, r in enumerate(results):
            if isinstance(r, ImageError):
                err_type[i], err[i] = r.error_type, r.message
                continue
            m = min(k, r.ids.shape[0])
            top_ids[i, :m], top_probs[i, :m] = r.ids[:m], r.probs[:m]
            label[i], ok[i] = r.labels[0], True
        return {
            "index": np.asarray(batch["index"], dtype=np.int64),
            "path": np.asarray(paths, dtype=object),
            "ok": ok,
            "top_ids": top_ids,
            "top_probs": top_probs,
            "label": np.asarray(label, dtype=object),
            "error_type": np.asarray(err_type, dtype=object),
            "error": np.asarray(err, dtype=object),
        }


def classify_files_ray(
    paths: Sequence[str | os.PathLike[str]],
    pipeline_factory: Callable[[], InferencePipeline],
    *,
    batch_size: int = 32,
    concurrency: int = 2,
    cpus_per_actor: float = 1.0,
) -> dict[str, npt.NDArray[Any]]:
    """Classify image files with ``map_batches(RayImageClassifier, ...)``; one row per file, in order.

    Args:
        paths: image files (any format the preprocessor decodes).
        pipeline_factory: see :class:`RayImageClassifier`.
        batch_size: images per model call.
        concurrency: number of actors (each holds one model).
        cpus_per_actor: Ray CPUs each actor reserves.

    Returns:
        The columns of :class:`RayImageClassifier`, as numpy arrays ordered like ``paths``.

    Raises:
        MissingDependencyError: Ray is not installed (``pip install 'mlsys-vision[ray]'``).
        InvalidInputError: no paths, bad batch size, concurrency or CPUs.

    Example:
        >>> out = classify_files_ray(["a.png", "b.jpg"], make_pipeline, concurrency=1)  # doctest: +SKIP
        >>> out["label"].tolist(), out["ok"].tolist()  # doctest: +SKIP
        (['cat', 'dog'], [True, True])
    """
    items = [os.fspath(p) for p in paths]
    if not items:
        raise InvalidInputError("no paths given; expected at least one image file")
    batch_size = check_k(batch_size, name="batch_size", limit="max_batch")
    concurrency = check_k(concurrency, name="concurrency")
    if (
        isinstance(cpus_per_actor, bool)
        or not isinstance(cpus_per_actor, (int, float))
        or cpus_per_actor <= 0
    ):
        raise InvalidInputError(f"cpus_per_actor must be a number > 0, got {cpus_per_actor!r}")
    ray = ensure_ray(RAY_EXTRA)
    ds = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(items)])
    ds = ds.map_batches(
        RayImageClassifier,
        fn_constructor_args=(pipeline_factory,),
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=cpus_per_actor,
    )
    parts = list(ds.iter_batches(batch_size=None, batch_format="numpy"))
    out = {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}
    order = np.argsort(out["index"], kind="stable")
    return {c: v[order] for c, v in out.items()}
