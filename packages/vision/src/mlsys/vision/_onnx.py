"""ONNX export of the package's models and an ONNX Runtime parity check.

The legacy TorchScript-based exporter is used (``dynamo=False``): it needs no extra packages and
handles the ViT, including the top-k token pruning (TopK + Gather). The batch dimension is
dynamic.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlsys.common._optional import import_optional
from mlsys.common.errors import CorruptFileError, InvalidInputError, MlsysError
from mlsys.vision._pipeline import _torch_input_spec

__all__ = ["OnnxExportError", "OnnxParityError", "check_onnx_parity", "export_onnx", "onnx_session"]


class OnnxParityError(MlsysError, AssertionError):
    """ONNX Runtime's outputs differ from torch's by more than the tolerance."""


class OnnxExportError(InvalidInputError):
    """A module cannot be exported to ONNX; the message names the innermost submodule that fails."""


def _try_export(module: nn.Module, args: tuple[Any, ...], opset: int) -> Exception | None:
    import io

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, io.BytesIO(), opset_version=opset, dynamo=False)  # type: ignore[arg-type]
    except Exception as exc:  # whatever the exporter raises: the caller only needs to know it failed
        return exc
    return None


def _locate_unsupported(model: nn.Module, example: torch.Tensor, opset: int) -> tuple[str, nn.Module] | None:
    """The innermost submodule whose own export fails (with the inputs it saw in an eager run)."""
    inputs: dict[str, tuple[Any, ...]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda _m, args, name=name: inputs.setdefault(name, args))
        for name, m in model.named_modules()
        if name
    ]
    try:
        with torch.no_grad():
            model(example)
    except Exception:
        pass
    finally:
        for h in hooks:
            h.remove()

    def descend(prefix: str, mod: nn.Module) -> tuple[str, nn.Module] | None:
        for name, child in mod.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if full in inputs and _try_export(child, inputs[full], opset) is not None:
                return descend(full, child) or (full, child)
        return None

    return descend("", model)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = 17,
    example: torch.Tensor | None = None,
    input_name: str = "images",
    output_name: str = "logits",
) -> Path:
    """Export ``model`` (in eval mode) to an ONNX file with a dynamic batch dimension, and check it.

    Args:
        model: a :class:`ViT`, :class:`DynamicTokenPruning` (top-k mode) or any module mapping
            images to logits (then ``example`` is required).
        path: the ``.onnx`` file to write.
        opset: ONNX opset version.
        example: an example input; default zeros ``(1, C, S, S)`` from the model's config.

    A model on a GPU is exported from a CPU copy (it stays where it is); :func:`check_onnx_parity`
    runs it on its own device against ONNX Runtime on the CPU.

    Example:
        >>> import tempfile, os
        >>> from mlsys.vision import ViT, ViTConfig
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8,
        ...                   depth=1, num_heads=2))
        >>> p = export_onnx(m, os.path.join(tempfile.mkdtemp(), "vit.onnx"))
        >>> check_onnx_parity(m, p) < 1e-4
        True
    """
    onnx = import_optional("onnx", extra="mlsys-vision[onnx]")
    cfg = getattr(model, "config", None)
    if getattr(cfg, "mode", "topk") == "threshold":
        raise InvalidInputError("mode='threshold' keeps a data-dependent token count; export a top-k model")
    if example is None:
        spec = _torch_input_spec(model)
        if spec is None:
            raise InvalidInputError(
                f"cannot infer the input shape of a {type(model).__name__}; pass example="
            )
        example = torch.zeros(1, spec[0], spec[1], spec[1])
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    source = model
    if _device_of(model).type != "cpu":
        # a model living on a GPU is exported from a CPU copy: the traced graph then holds no
        # device constants, and the model itself (and any CUDA graph captured on it) is untouched
        model = copy.deepcopy(model).to("cpu")
    example = example.to("cpu")
    was_training = source.training
    model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # shape checks at the model boundary are constants for a fixed-shape trace
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter is chosen on purpose
            try:
                torch.onnx.export(
                    model,
                    (example,),
                    str(out),
                    input_names=[input_name],
                    output_names=[output_name],
                    dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
            except Exception as exc:  # the exporter raises many unrelated types; name the module
                out.unlink(missing_ok=True)
                found = _locate_unsupported(model, example, opset)
                where = (
                    f"submodule {found[0]!r} ({type(found[1]).__name__})"
                    if found is not None
                    else f"the {type(model).__name__} itself"
                )
                raise OnnxExportError(
                    f"cannot export {type(model).__name__} to ONNX (opset {opset}): {where} is not supported: "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                ) from exc
    finally:
        source.train(was_training)
    onnx.checker.check_model(onnx.load(str(out)))
    return out


def _device_of(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def onnx_session(path: str | Path, *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on CPU, with ``threads`` intra-op threads (None = ORT default)."""
    ort = import_optional("onnxruntime", extra="mlsys-vision[onnx]")
    opts = ort.SessionOptions()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads <= 0:
            raise InvalidInputError(f"threads must be a positive int or None, got {threads!r}")
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if not Path(path).is_file():
        raise CorruptFileError(f"{path} does not exist or is not a file; expected an .onnx model")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's InvalidProtobuf/Fail/... share no public base class
        raise CorruptFileError(
            f"{path} cannot be loaded by ONNX Runtime (truncated or corrupt?): {exc}"
        ) from exc


def check_onnx_parity(
    model: nn.Module,
    onnx_model: str | Path | Any,
    x: torch.Tensor | None = None,
    *,
    atol: float = 1e-4,
    batch: int = 4,
    seed: int = 0,
) -> float:
    """Run ``model`` and the ONNX model on the same input; return the max absolute logit difference.

    Raises :class:`OnnxParityError` when it exceeds ``atol``. ``x`` defaults to a seeded random
    batch of ``batch`` images shaped from the model's config.
    """
    sess: Any = onnx_model if hasattr(onnx_model, "run") else onnx_session(onnx_model)
    if x is None:
        spec = _torch_input_spec(model)
        if spec is None:
            raise InvalidInputError(f"cannot infer the input shape of a {type(model).__name__}; pass x=")
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, spec[0], spec[1], spec[1], generator=g)
    was_training = model.training
    model.eval()
    x = x.to("cpu")
    try:
        with torch.no_grad():
            ref = model(x.to(_device_of(model))).float().cpu().numpy()
    finally:
        model.train(was_training)
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy().astype(np.float32)})[0]
    if got.shape != ref.shape:
        raise OnnxParityError(f"ONNX output shape {got.shape} != torch output shape {ref.shape}")
    diff = float(np.abs(got - ref).max())
    if diff > atol:
        raise OnnxParityError(f"ONNX Runtime logits differ from torch by {diff:.3g}, expected <= {atol:.3g}")
    return diff
