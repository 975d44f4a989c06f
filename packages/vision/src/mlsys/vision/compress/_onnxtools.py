"""ONNX helpers of the compression tools: checked loading, torch-module <-> ONNX-node mapping,
graph inspection of what a quantizer did, and parity over several batch sizes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common._optional import import_optional
from mlsys.common.errors import CorruptFileError, InvalidInputError
from mlsys.vision._onnx import OnnxParityError, onnx_session

__all__ = ["ParityReport", "ParityResult", "load_onnx", "onnx_layers", "onnx_parity", "quantized_layers"]

_EXTRA = "mlsys-vision[onnx]"
WEIGHT_OPS = ("Conv", "MatMul", "Gemm")


def load_onnx(path: str | Path) -> Any:
    """Load and check an ONNX file; a missing, truncated or invalid file raises :class:`CorruptFileError`.

    Example:
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "bad.onnx")
        >>> _ = open(p, "wb").write(b"\\x08\\x07\\x12")
        >>> load_onnx(p)  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        mlsys.common.errors.CorruptFileError: ...
    """
    onnx = import_optional("onnx", extra=_EXTRA)
    p = Path(path)
    if not p.is_file():
        raise CorruptFileError(f"{p} does not exist or is not a file; expected an .onnx model")
    try:
        model = onnx.load(str(p))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, onnx ValidationError: no common public base
        raise CorruptFileError(f"{p} is not a valid ONNX model (truncated or corrupt?): {exc}") from exc
    if not model.graph.node:
        raise CorruptFileError(f"{p} holds an ONNX model without nodes (truncated?)")
    return model


def _module_path(node_name: str) -> str:
    """``/blocks.0/dw/dw.0/Conv`` -> ``blocks.0.dw.0``: the torch module a legacy-exported node came from."""
    segs = [s for s in node_name.split("/") if s][:-1]
    parts: list[str] = []
    prev = ""
    for s in segs:
        if prev and s.startswith(prev + "."):
            parts.append(s[len(prev) + 1 :])
        else:
            parts.append(s)
        prev = s
    return ".".join(parts)


def onnx_layers(model: Any) -> dict[str, list[str]]:
    """``{torch module path: [node names]}`` of the Conv/MatMul/Gemm nodes with a constant weight
    (an initializer) of a model exported by :func:`~mlsys.vision.export_onnx`."""
    if isinstance(model, (str, Path)):
        model = load_onnx(model)
    inits = {i.name for i in model.graph.initializer}
    out: dict[str, list[str]] = {}
    for n in model.graph.node:
        if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in inits:
            out.setdefault(_module_path(n.name), []).append(n.name)
    return out


def quantized_layers(model: Any) -> dict[str, str]:
    """What a quantized graph runs in low precision: ``{node name: kind}`` with kind ``"int8"``
    (a Conv/MatMul/Gemm whose weight is dequantized from an 8-bit initializer, QDQ format, a
    QLinear/Integer operator, or a fused ``QAttention``) or ``"int4"`` (a ``MatMulNBits`` node with 4 bits).

    Example:
        >>> quantized_layers.__name__
        'quantized_layers'
    """
    if isinstance(model, (str, Path)):
        model = load_onnx(model)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    out: dict[str, str] = {}
    for n in g.node:
        if n.op_type == "MatMulNBits":
            bits = next((a.i for a in n.attribute if a.name == "bits"), 4)
            out[n.name] = f"int{bits}"
        elif n.op_type in (
            "QLinearConv",
            "QLinearMatMul",
            "MatMulInteger",
            "ConvInteger",
            "DynamicQuantizeMatMul",
            "QGemm",
            "QAttention",  # com.microsoft: fused attention with INT8 QKV weights (dynamic INT8)
        ):
            out[n.name] = "int8"
        elif n.op_type in WEIGHT_OPS and len(n.input) > 1:
            src = producers.get(n.input[1])
            if src is not None and src.op_type == "DequantizeLinear" and src.input[0] in inits:
                out[n.name] = "int8" if inits[src.input[0]].data_type in (2, 3) else "int4"  # UINT8/INT8
    return out


@dataclass
class ParityResult:
    """ONNX Runtime vs torch on one batch: max abs logit difference and top-1 agreement."""

    batch: int
    max_abs_diff: float
    top1_agreement: float


class ParityReport(list[ParityResult], TabularDisplay):
    """What :func:`onnx_parity` returns: a list of :class:`ParityResult`, one per batch size, that
    displays as an HTML table in a notebook and converts with :meth:`to_pandas` (values exact).

    Example:
        >>> r = ParityReport([ParityResult(1, 2e-06, 1.0), ParityResult(32, 3e-06, 1.0)])
        >>> [p.batch for p in r], "<caption>ONNX parity" in r._repr_html_()
        ([1, 32], True)
    """

    _pandas_extra = "mlsys-vision[pandas]"

    def _display_table(self) -> DisplayTable:
        return DisplayTable(
            "ONNX parity (ONNX Runtime vs torch)",
            ("batch", "max_abs_diff", "top1_agreement"),
            tuple((r.batch, r.max_abs_diff, r.top1_agreement) for r in self),
            index="batch",
        )


def onnx_parity(
    model: nn.Module,
    onnx_model: str | Path | Any,
    x: torch.Tensor,
    *,
    batches: Sequence[int] = (1, 32),
    atol: float = 1e-4,
    threads: int | None = 1,
) -> ParityReport:
    """Compare ``model`` and the ONNX model on the first ``b`` rows of ``x`` for each ``b`` in ``batches``.

    Returns a :class:`ParityReport` (a list of :class:`ParityResult` that displays as a table).

    Raises :class:`~mlsys.vision.OnnxParityError` when a logit differs by more than ``atol`` or a
    top-1 class differs.
    """
    sess: Any = onnx_model if hasattr(onnx_model, "run") else onnx_session(onnx_model, threads=threads)
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise InvalidInputError(
            f"x must be a (n, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}"
        )
    if max(batches) > x.shape[0]:
        raise InvalidInputError(f"x has {x.shape[0]} rows; batches {tuple(batches)} need {max(batches)}")
    was = model.training
    model.eval()
    res = ParityReport()
    try:
        for b in batches:
            xb = x[:b].float().cpu()
            with torch.no_grad():
                ref = model(xb).float().numpy()
            got = sess.run(None, {sess.get_inputs()[0].name: xb.numpy()})[0]
            diff = float(np.abs(got - ref).max())
            agree = float((got.argmax(-1) == ref.argmax(-1)).mean())
            r = ParityResult(int(b), diff, agree)
            if diff > atol or agree < 1.0:
                raise OnnxParityError(
                    f"batch {b}: ONNX Runtime logits differ from torch by {diff:.3g} (<= {atol:.3g} expected), "
                    f"top-1 agreement {agree:.4f} (1.0 expected)"
                )
            res.append(r)
    finally:
        model.train(was)
    return res
