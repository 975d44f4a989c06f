"""End-to-end, profiled image classification: preprocess -> model -> postprocess.

The model is a torch module or an ONNX Runtime ``InferenceSession``. Every step is a stage of
one :class:`~mlsys.common.profiling.LatencyProfiler` (``decode``, ``resize``, ``crop``,
``normalize``, ``model``, ``postprocess``) and every call one end-to-end request, so the report
shows p50/p95/p99 per stage and which stage dominates.

On a GPU (``device="cuda"``) batches are padded to a few static bucket sizes, each bucket's
forward is captured once as a CUDA graph and replayed (no per-kernel launch cost at batch 1),
inputs go through pinned host buffers with non-blocking copies, and a large batch is processed
in bucket-sized chunks whose preprocessing overlaps the previous chunk's forward. On the CPU
(the default) the same API runs as it always did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from mlsys.common.devices import Precision, resolve_device, resolve_precision
from mlsys.common.errors import DimensionMismatchError, InvalidInputError, MlsysError
from mlsys.common.profiling import LatencyProfiler, LatencyReport, StageStats
from mlsys.common.validation import as_array, check_k
from mlsys.vision._preprocess import ImageInput, PreprocessConfig, Preprocessor

__all__ = [
    "BatchPrediction",
    "ImageError",
    "InferencePipeline",
    "Prediction",
    "bucket_for",
    "softmax",
    "top_k",
]

STAGES: tuple[str, ...] = ("decode", "resize", "crop", "normalize", "model", "postprocess")
DEFAULT_CUDA_BUCKETS: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
"""Static batch sizes of the GPU path: a batch is padded to the smallest bucket that holds it."""

OnError = Literal["raise", "skip", "record"]


def bucket_for(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ``>= n`` (``buckets`` ascending); the largest one when ``n`` exceeds them
    all (the caller then splits the batch into chunks of that size).

    Example:
        >>> bucket_for(3, (1, 2, 4, 8)), bucket_for(8, (1, 2, 4, 8)), bucket_for(20, (1, 2, 4, 8))
        (4, 8, 8)
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise InvalidInputError(f"batch size must be a positive int, got {n!r}")
    buckets = _check_buckets(buckets)
    for b in buckets:
        if b >= n:
            return int(b)
    return int(buckets[-1])


def _check_buckets(buckets: Any) -> tuple[int, ...]:
    if isinstance(buckets, (str, bytes)):
        raise InvalidInputError(f"batch_buckets must be a sequence of positive ints, got {buckets!r}")
    try:
        out = tuple(buckets)
    except TypeError as exc:
        raise InvalidInputError(
            f"batch_buckets must be a sequence of positive ints, got {buckets!r}"
        ) from exc
    if (
        not out
        or any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in out)
        or list(out) != sorted(set(out))
    ):
        raise InvalidInputError(
            f"batch_buckets must be a non-empty, strictly increasing sequence of positive ints, got {buckets!r}"
        )
    return out


@dataclass(frozen=True)
class ImageError:
    """Why one input of :meth:`InferencePipeline.predict_batch` produced no prediction.

    Attributes:
        index: position of the input in the batch.
        path: the file path when the input was a path, else None.
        error_type: the exception's class name (e.g. ``"ImageDecodeError"``).
        message: the exception's message.
    """

    index: int
    path: str | None
    error_type: str
    message: str


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
    """A batch's results: full probabilities ``(B, n_classes)`` and top-k ids/probs ``(B, k)``.

    With ``on_error="skip"`` or ``"record"`` the rows are the inputs that could be read:
    ``input_indices[i]`` is the input position of row ``i`` and ``errors`` lists the inputs that
    failed (filled by ``"record"``; ``"skip"`` leaves it empty). :meth:`rows` gives one entry per
    input, a :class:`Prediction` or an :class:`ImageError`.
    """

    probs: npt.NDArray[np.float32]
    top_ids: npt.NDArray[np.int64]
    top_probs: npt.NDArray[np.float32]
    labels: list[list[str]]
    input_indices: npt.NDArray[np.int64] | None = None
    errors: list[ImageError] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.probs.shape[0])

    def __getitem__(self, i: int) -> Prediction:
        return Prediction(self.top_ids[i], self.top_probs[i], self.labels[i])

    def rows(self) -> list[Prediction | ImageError]:
        """One entry per input, in input order: its :class:`Prediction`, or its :class:`ImageError`
        (inputs dropped by ``on_error="skip"`` are absent)."""
        idx = self.input_indices if self.input_indices is not None else np.arange(len(self))
        entries: list[tuple[int, Prediction | ImageError]] = [(int(j), self[i]) for i, j in enumerate(idx)]
        entries += [(e.index, e) for e in self.errors]
        return [e for _, e in sorted(entries, key=lambda t: t[0])]


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
    from mlsys.vision.compress._mobilenet import MobileNetV3Config

    if isinstance(cfg, MobileNetV3Config):
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
        device: where a torch model runs: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or
            ``"auto"`` (:func:`mlsys.common.devices.resolve_device`; a missing GPU raises
            :class:`~mlsys.common.errors.DeviceUnavailableError`). The model is moved there
            (``nn.Module.to``, in place). ONNX sessions run on the CPU.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"`` autocast around the forward;
            what the device cannot run falls back to fp32 and :attr:`fallbacks` says so.
        cuda_graphs: capture each bucket's forward as a CUDA graph and replay it; None (default)
            = on for CUDA devices. Asked for on another device it is off, stated in :attr:`fallbacks`.
            Needs a forward without host synchronisation and with static shapes (the package's
            ViT, top-k pruned and merged models qualify).
        batch_buckets: static batch sizes (ascending); a batch is zero-padded to the smallest
            bucket holding it and larger batches run in chunks of the largest bucket. None =
            :data:`DEFAULT_CUDA_BUCKETS` on CUDA, no padding on the CPU (today's behaviour).
        input_name: for an ONNX session, the input name the caller expects; a model whose input is
            named otherwise is refused (None = accept the model's own name).

    The channel count and crop size of the preprocessor must match the model's input (checked
    for the package's models and for ONNX sessions with static dims; an ONNX input that is not a
    4-D float tensor is refused too): a mismatch raises
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
        device: Any = "cpu",
        precision: str = "fp32",
        cuda_graphs: bool | None = None,
        batch_buckets: Sequence[int] | None = None,
        input_name: str | None = None,
    ) -> None:
        self.profiler = profiler if profiler is not None else LatencyProfiler()
        self.fallbacks: list[str] = []
        """Sentences saying where a requested option runs differently (precision, CUDA graphs)."""
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
            if input_name is not None and input_name != self._input_name:
                raise InvalidInputError(
                    f"the ONNX model's input is named {self._input_name!r}, but the pipeline feeds {input_name!r}"
                )
            shape = inputs[0].shape
            if len(shape) != 4 or any(isinstance(d, int) and d <= 0 for d in shape):
                raise DimensionMismatchError(
                    f"the ONNX model's input {self._input_name!r} has shape {list(shape)}; the pipeline feeds "
                    "images (batch, channels, height, width)"
                )
            if getattr(inputs[0], "type", "tensor(float)") != "tensor(float)":
                raise InvalidInputError(
                    f"the ONNX model's input {self._input_name!r} is {inputs[0].type}; the pipeline feeds tensor(float)"
                )
            spec = (shape[1], shape[2]) if isinstance(shape[1], int) else None
        else:
            import torch

            if not isinstance(model, torch.nn.Module):
                raise InvalidInputError(
                    f"model must be a torch.nn.Module or an onnxruntime.InferenceSession, got {type(model).__name__}"
                )
            model.eval()
            spec = _torch_input_spec(model)
        self.device = resolve_device(device)
        if self._onnx and self.device.type != "cpu":
            raise InvalidInputError(
                f"an ONNX Runtime session runs on the CPU here; got device={device!r} "
                "(pass the torch model for a GPU)"
            )
        self.precision: Precision = resolve_precision(precision, self.device)
        if self.precision.fallback is not None:
            self.fallbacks.append(self.precision.fallback)
        is_cuda = self.device.type == "cuda"
        if cuda_graphs and not is_cuda:
            self.fallbacks.append(f"CUDA graphs need a CUDA device; running eagerly on {self.device.type}")
        self.cuda_graphs = bool(is_cuda if cuda_graphs is None else (cuda_graphs and is_cuda))
        if batch_buckets is None:
            self.batch_buckets: tuple[int, ...] | None = DEFAULT_CUDA_BUCKETS if is_cuda else None
        else:
            self.batch_buckets = _check_buckets(batch_buckets)
        if self.cuda_graphs and self.batch_buckets is None:  # unreachable: CUDA defaults the buckets
            self.batch_buckets = DEFAULT_CUDA_BUCKETS
        if not self._onnx:
            model.to(self.device)
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, Any]] = {}
        self._host: dict[tuple[int, ...], list[Any]] = {}
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

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        import torch

        p = self.precision
        if not p.autocast:
            return contextlib.nullcontext()
        # no weight-cast cache: a cached cast made inside a CUDA graph capture must not outlive it
        return torch.autocast(self.device.type, dtype=p.dtype, cache_enabled=not self.cuda_graphs)

    def _host_buffer(self, shape: tuple[int, ...], slot: int) -> Any:
        """A reusable host tensor of ``shape`` (pinned for CUDA); two slots for double buffering."""
        import torch

        bufs = self._host.setdefault(shape, [None, None])
        if bufs[slot] is None:
            t = torch.empty(shape, dtype=torch.float32)
            bufs[slot] = t.pin_memory() if self.device.type == "cuda" else t
        return bufs[slot]

    def _graph(self, shape: tuple[int, ...]) -> tuple[Any, Any, Any]:
        """(graph, static input, static output) of one bucket shape, captured on first use."""
        import torch

        got = self._graphs.get(shape)
        if got is not None:
            return got
        static_in = torch.zeros(shape, dtype=torch.float32, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side), torch.inference_mode(), self._autocast():
            for _ in range(2):  # warm-up outside the capture (cuBLAS/cuDNN workspaces, lazy init)
                self.model(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph), self._autocast():
            static_out = self.model(static_in)
        self._graphs[shape] = (graph, static_in, static_out)
        return self._graphs[shape]

    def _launch(self, chunk: npt.NDArray[np.float32], slot: int) -> tuple[Any, int]:
        """Enqueue the forward of ``chunk`` (padded to its bucket); returns (device logits, rows).

        On CUDA nothing here waits for the GPU: the copy from the pinned buffer and the graph
        replay (or eager forward) are queued, so the host can preprocess the next chunk meanwhile.
        """
        import torch

        m = int(chunk.shape[0])
        assert self.batch_buckets is not None
        b = bucket_for(m, self.batch_buckets)
        shape = (b, *chunk.shape[1:])
        host = self._host_buffer(shape, slot)
        host[:m].copy_(torch.from_numpy(chunk))
        if m < b:
            host[m:].zero_()
        if self.cuda_graphs:
            graph, static_in, static_out = self._graph(shape)
            static_in.copy_(host, non_blocking=True)
            graph.replay()
            # a copy: the next replay overwrites static_out
            return static_out[:m].float().clone(), m
        x = host.to(self.device, non_blocking=True) if self.device.type == "cuda" else host.clone()
        with torch.inference_mode(), self._autocast():
            logits = self.model(x)
        return logits[:m].float(), m

    def _run_model(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        with self.profiler.stage("model"):
            if self._onnx:
                out = self.model.run(None, {self._input_name: batch})[0]
                return np.asarray(out, dtype=np.float32)
            import torch

            if self.batch_buckets is None:  # the CPU path of old: one eager call, no padding
                with torch.inference_mode(), self._autocast():
                    logits = self.model(torch.from_numpy(batch))
                return logits.float().numpy()
            size = self.batch_buckets[-1]
            outs = [self._launch(batch[i : i + size], 0)[0] for i in range(0, batch.shape[0], size)]
            return torch.cat(outs).cpu().numpy()

    def _run_chunked(self, items: list[Any]) -> npt.NDArray[np.float32]:
        """Preprocess and run a large batch in bucket-sized chunks; on CUDA the preprocessing of
        chunk k + 1 overlaps the forward of chunk k (two pinned buffers, one synchronisation at the end)."""
        import torch

        assert self.batch_buckets is not None
        size = self.batch_buckets[-1]
        outs: list[Any] = []
        events: list[Any] = [None, None]
        cuda = self.device.type == "cuda"
        for k, start in enumerate(range(0, len(items), size)):
            chunk = self.preprocessor.normalize(items[start : start + size])
            slot = k % 2
            if cuda and events[slot] is not None:
                events[slot].synchronize()  # the copy that last read this pinned buffer is done
            with self.profiler.stage("model"):
                logits, _ = self._launch(chunk, slot)
            if cuda:
                ev = torch.cuda.Event()
                ev.record(torch.cuda.current_stream(self.device))
                events[slot] = ev
            outs.append(logits)
        with self.profiler.stage("model"):
            return torch.cat(outs).cpu().numpy()  # type: ignore[no-any-return]

    def warmup(self) -> None:
        """Capture (CUDA graphs) or run once every bucket, so that no request pays for it.
        A no-op without buckets or for ONNX sessions."""
        if self._onnx or self.batch_buckets is None:
            return
        spec = _torch_input_spec(self.model)
        cfg = self.preprocessor.config
        chans = spec[0] if spec is not None else cfg.channels
        side = spec[1] if spec is not None else cfg.crop
        if side is None:
            raise InvalidInputError("cannot infer the input size for warmup(); set PreprocessConfig.crop")
        for b in self.batch_buckets:
            self._launch(np.zeros((b, chans, side, side), np.float32), 0)[0].cpu()

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

    def predict_batch(self, images: Sequence[ImageInput], *, on_error: OnError = "raise") -> BatchPrediction:
        """Classify a batch of images (bytes, paths or arrays).

        Args:
            images: the inputs.
            on_error: what an input that cannot be read or decoded does (an
                :class:`~mlsys.common.errors.MlsysError` of the preprocessor: a corrupt or
                truncated file, an unsupported format, a missing path): ``"raise"`` (default) fails
                the whole call; ``"skip"`` drops it; ``"record"`` drops it from the rows and adds an
                :class:`ImageError` (index, path, error type, message) to ``errors``. One bad file
                then costs one row, not the batch.

        On the CPU without buckets the whole batch is one model call; with buckets (the GPU path)
        it runs in chunks of the largest bucket, preprocessing overlapping the forward.

        Example:
            >>> import numpy as np
            >>> from mlsys.vision import ViT, ViTConfig, PreprocessConfig
            >>> vit = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8,
            ...                     depth=1, num_heads=2))
            >>> pipe = InferencePipeline(PreprocessConfig(resize=8, crop=8, mean=(0.5,), std=(0.5,),
            ...                                           channels=1), vit)
            >>> out = pipe.predict_batch([np.zeros((9, 9), np.uint8), b"not an image"], on_error="record")
            >>> len(out), out.input_indices.tolist(), out.errors[0].error_type
            (1, [0], 'UnsupportedImageError')
        """
        if on_error not in ("raise", "skip", "record"):
            raise InvalidInputError(f"on_error must be 'raise', 'skip' or 'record', got {on_error!r}")
        items = list(images)
        if not items:
            raise InvalidInputError("no images given; expected at least one")
        with self.profiler.request():
            decoded: list[Any] = []
            kept: list[int] = []
            errors: list[ImageError] = []
            for i, im in enumerate(items):
                if on_error == "raise":
                    decoded.append(self.preprocessor.image(im))
                    continue
                try:
                    decoded.append(self.preprocessor.image(im))
                except MlsysError as exc:
                    if on_error == "record":
                        path = str(im) if isinstance(im, (str, Path)) else None
                        errors.append(ImageError(i, path, type(exc).__name__, str(exc)))
                    continue
                kept.append(i)
            indices = None if on_error == "raise" else np.asarray(kept, dtype=np.int64)
            if not decoded:
                empty = np.zeros((0, 0), np.float32)
                return BatchPrediction(
                    empty, np.zeros((0, 0), np.int64), empty, [], input_indices=indices, errors=errors
                )
            if self.batch_buckets is not None and not self._onnx and len(decoded) > self.batch_buckets[-1]:
                logits = self._run_chunked(decoded)
            else:
                logits = self._run_model(self.preprocessor.normalize(decoded))
            out = self._postprocess(logits)
            out.input_indices, out.errors = indices, errors
            return out

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

    def report(self) -> LatencyReport:
        """The profiler's table plus the thread count and the dominating stage.

        A ``str`` (a :class:`~mlsys.common.profiling.LatencyReport`): it prints as text, renders
        as an HTML table in a notebook and converts with ``to_pandas()`` (seconds, unrounded).
        """
        stats = self.profiler.stats()
        end = stats.get("end_to_end")
        notes = [f"threads: {self.threads}"]
        if end is not None and end.total > 0:
            dom = self.dominant_stage()
            notes.append(
                f"dominant stage: {dom} ({100.0 * stats[dom].total / end.total:.0f}% of end-to-end time)"
            )
        return LatencyReport(stats, unit="ms", notes=notes)
