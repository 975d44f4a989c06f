"""End-to-end, profiled image classification: preprocess -> model -> postprocess.

The model is a torch module or an ONNX Runtime ``InferenceSession``. Every step is a stage of
one :class:`~mlsys.common.profiling.LatencyProfiler` (``decode``, ``resize``, ``crop``,
``normalize``, ``model``, ``postprocess``) and every call one end-to-end request, so the report
shows p50/p95/p99 per stage and which stage dominates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from mlsys.common.errors import DimensionMismatchError, InvalidInputError
from mlsys.common.profiling import LatencyProfiler, StageStats
from mlsys.common.validation import as_array, check_k
from mlsys.vision._preprocess import ImageInput, PreprocessConfig, Preprocessor

__all__ = ["BatchPrediction", "InferencePipeline", "Prediction", "softmax", "top_k"]

STAGES: tuple[str, ...] = ("decode", "resize", "crop", "normalize", "model", "postprocess")


def _scores_2d(x: Any, name: str) -> npt.NDArray[np.float32]:
    """A non-empty ``(B, n_classes)`` float32 array of finite-or-inf numbers, or InvalidInputError."""
    z = as_array(x, dtype=np.float32, name=name) if not isinstance(x, (str, bytes)) else None
    if z is None or z.ndim != 2 or z.shape[1] == 0 or np.isnan(z).any():
        raise InvalidInputError(
            f"{name} must be a numeric (B, n_classes) array with n_classes >= 1 and no NaN, got "
            f"{'shape ' + str(z.shape) if z is not None else type(x).__name__}"
        )
    return z


def softmax(logits: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    """Row-wise, numerically stable softmax of ``(B, n_classes)`` logits, as float32.

    Example:
        >>> import numpy as np
        >>> softmax(np.array([[0.0, 0.0]])).tolist()
        [[0.5, 0.5]]
    """
    z = _scores_2d(logits, "logits")
    z = z - z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def top_k(probs: npt.NDArray[np.float32], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Indices and values of the ``k`` largest entries of each row, in descending order.

    Example:
        >>> import numpy as np
        >>> top_k(np.array([[0.1, 0.7, 0.2]], np.float32), 2)[0].tolist()
        [[1, 2]]
    """
    probs = _scores_2d(probs, "probs")
    k = min(check_k(k, limit=None), probs.shape[1])  # bounded by the classes: no limit needed
    part = np.argpartition(-probs, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(probs, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    return ids, np.take_along_axis(vals, order, axis=1)


@dataclass
class Prediction:
    """One image's result: top-k class ids, probabilities and labels (best first)."""

    ids: npt.NDArray[np.int64]
    probs: npt.NDArray[np.float32]
    labels: list[str]


@dataclass
class BatchPrediction:
    """A batch's results: full probabilities ``(B, n_classes)`` and top-k ids/probs ``(B, k)``."""

    probs: npt.NDArray[np.float32]
    top_ids: npt.NDArray[np.int64]
    top_probs: npt.NDArray[np.float32]
    labels: list[list[str]]

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    def __getitem__(self, i: int) -> Prediction:
        return Prediction(self.top_ids[i], self.top_probs[i], self.labels[i])


def _is_onnx_session(model: Any) -> bool:
    return hasattr(model, "run") and hasattr(model, "get_inputs") and hasattr(model, "get_outputs")


def _torch_input_spec(model: Any) -> tuple[int, int] | None:
    """(channels, img_size) of the package's models (ViT, pruned, merged), else None."""
    from mlsys.vision._vit import ViT, ViTConfig

    if isinstance(model, ViT):
        return model.config.in_chans, model.config.img_size
    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, ViT):
        return backbone.config.in_chans, backbone.config.img_size
    cfg = getattr(model, "config", None)
    if isinstance(cfg, ViTConfig):
        return cfg.in_chans, cfg.img_size
    return None


class InferencePipeline:
    """Preprocess -> model -> softmax/top-k, with every stage profiled.

    Args:
        preprocessor: a :class:`Preprocessor` or a :class:`PreprocessConfig`; its profiler is
            replaced by the pipeline's so that all stages land in one table.
        model: a torch ``nn.Module`` returning logits ``(B, n_classes)`` (put into eval mode), or
            an ``onnxruntime.InferenceSession`` with one image input.
        labels: class names (index -> name); default ``str(index)``.
        top_k: how many classes to return per image.
        profiler: the profiler to record into; a new one when None.

    The channel count and crop size of the preprocessor must match the model's input (checked
    for the package's models and for ONNX sessions with static dims): a mismatch raises
    :class:`~mlsys.common.errors.DimensionMismatchError` instead of a wrong tensor.

    Example:
        >>> import numpy as np, torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> vit = ViT(ViTConfig(img_size=16, patch_size=4, in_chans=1, num_classes=3, embed_dim=16,
        ...                     depth=1, num_heads=2))
        >>> pipe = InferencePipeline(PreprocessConfig(resize=16, crop=16, mean=(0.5,), std=(0.5,),
        ...                                           channels=1), vit, labels=["a", "b", "c"], top_k=2)
        >>> len(pipe.predict(np.zeros((20, 20), np.uint8)).labels)
        2
        >>> pipe.dominant_stage() in ("decode", "resize", "crop", "normalize", "model", "postprocess")
        True
    """

    def __init__(
        self,
        preprocessor: Preprocessor | PreprocessConfig,
        model: Any,
        *,
        labels: Sequence[str] | None = None,
        top_k: int = 5,
        profiler: LatencyProfiler | None = None,
    ) -> None:
        self.profiler = profiler if profiler is not None else LatencyProfiler()
        if isinstance(preprocessor, PreprocessConfig):
            preprocessor = Preprocessor(preprocessor, profiler=self.profiler)
        if not isinstance(preprocessor, Preprocessor):
            raise InvalidInputError(
                f"preprocessor must be a Preprocessor or PreprocessConfig, got {type(preprocessor).__name__}"
            )
        if preprocessor.config.output != "numpy":
            preprocessor = Preprocessor(replace(preprocessor.config, output="numpy"), profiler=self.profiler)
        preprocessor.profiler = self.profiler
        self.preprocessor = preprocessor
        self.top_k = check_k(top_k, name="top_k", limit=None)  # results are min(top_k, classes) wide
        self.labels = list(labels) if labels is not None else None
        self.model = model
        self._onnx = _is_onnx_session(model)
        if self._onnx:
            inputs = model.get_inputs()
            if len(inputs) != 1:
                raise InvalidInputError(f"ONNX model must have one input, got {len(inputs)}")
            self._input_name = inputs[0].name
            shape = inputs[0].shape
            spec = (shape[1], shape[2]) if len(shape) == 4 and isinstance(shape[1], int) else None
        else:
            import torch

            if not isinstance(model, torch.nn.Module):
                raise InvalidInputError(
                    f"model must be a torch.nn.Module or an onnxruntime.InferenceSession, got {type(model).__name__}"
                )
            model.eval()
            spec = _torch_input_spec(model)
        cfg = preprocessor.config
        if spec is not None:
            chans = int(spec[0])
            if chans != cfg.channels:
                raise DimensionMismatchError(
                    f"the model expects {chans} input channel(s) but the preprocessor produces {cfg.channels}; "
                    f"set PreprocessConfig(channels={chans})"
                )
            size = spec[1]
            if isinstance(size, int) and cfg.crop is not None and cfg.crop != size:
                raise DimensionMismatchError(
                    f"the model expects {size}x{size} images but the preprocessor crops to {cfg.crop}x{cfg.crop}"
                )

    @property
    def threads(self) -> dict[str, int]:
        """Thread counts the model runs with (torch intra-op threads, or ONNX Runtime's setting; 0 = default)."""
        if self._onnx:
            opts = self.model.get_session_options()
            return {"onnxruntime_intra_op": int(opts.intra_op_num_threads)}
        import torch

        return {"torch_intra_op": torch.get_num_threads()}

    def _run_model(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with self.profiler.stage("model"):
            if self._onnx:
                out = self.model.run(None, {self._input_name: batch})[0]
                return np.asarray(out, dtype=np.float32)
            import torch

            with torch.inference_mode():
                logits = self.model(torch.from_numpy(batch))
            return logits.float().numpy()

    def _postprocess(self, logits: npt.NDArray[np.float32]) -> BatchPrediction:
        with self.profiler.stage("postprocess"):
            probs = softmax(logits)
            ids, vals = top_k(probs, self.top_k)
            names = self.labels
            if names is not None and probs.shape[1] > len(names):
                raise DimensionMismatchError(
                    f"model has {probs.shape[1]} classes but {len(names)} labels were given"
                )
            labels = [[names[j] if names is not None else str(j) for j in row] for row in ids.tolist()]
            return BatchPrediction(probs, ids, vals, labels)

    def predict_batch(self, images: Sequence[ImageInput]) -> BatchPrediction:
        """Classify a batch of images (bytes, paths or arrays) in one model call."""
        items = list(images)
        if not items:
            raise InvalidInputError("no images given; expected at least one")
        with self.profiler.request():
            batch = self.preprocessor.normalize([self.preprocessor.image(im) for im in items])
            return self._postprocess(self._run_model(batch))

    def predict(self, image: ImageInput) -> Prediction:
        """Classify one image (the single-image path: a batch of one)."""
        with self.profiler.request():
            batch = self.preprocessor.normalize([self.preprocessor.image(image)])
            return self._postprocess(self._run_model(batch))[0]

    def stats(self) -> dict[str, StageStats]:
        """Per-stage and end-to-end statistics (seconds)."""
        return self.profiler.stats()

    def dominant_stage(self) -> str:
        """The stage with the largest total time so far."""
        stats = self.profiler.stats()
        present = [s for s in STAGES if s in stats]
        if not present:
            raise InvalidInputError("nothing has been profiled yet; run predict or predict_batch first")
        return max(present, key=lambda s: stats[s].total)

    def report(self) -> str:
        """The profiler's table plus the thread count and the dominating stage."""
        stats = self.profiler.stats()
        end = stats.get("end_to_end")
        lines = [self.profiler.report(unit="ms"), f"threads: {self.threads}"]
        if end is not None and end.total > 0:
            dom = self.dominant_stage()
            lines.append(
                f"dominant stage: {dom} ({100.0 * stats[dom].total / end.total:.0f}% of end-to-end time)"
            )
        return "\n".join(lines)
