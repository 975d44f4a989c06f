"""Post-training quantization: onnxruntime INT8 (dynamic and static QDQ), a mixed INT8/INT4 policy
(fake-quant in torch, real kernels in onnxruntime), SmoothQuant and a per-layer sensitivity report.

The real kernels come from ``onnxruntime.quantization`` (``quantize_dynamic``, ``quantize_static``
with a calibration reader over real batches, and ``MatMulNBitsQuantizer`` for INT4). What it lacks
is added here: checked calibration data, a policy naming layers by torch module path or type, a
guard against the INT4 quantizer's ``nodes_to_include`` quantizing every MatMul (the complement is
passed as ``nodes_to_exclude`` and the output graph is inspected), and an MSE observer for the
torch fake-quant path.
"""

from __future__ import annotations

import copy
import fnmatch
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mlsys.common._display import DisplayTable, TabularDisplay
from mlsys.common._optional import import_optional
from mlsys.common.errors import DimensionMismatchError, InvalidInputError, MlsysError, UnknownNameError
from mlsys.vision.compress._onnxtools import load_onnx, onnx_layers, quantized_layers

__all__ = [
    "CalibrationData",
    "LayerSensitivity",
    "MixedPrecisionPolicy",
    "MixedQuantResult",
    "QuantizationError",
    "SplitQKV",
    "fake_quantize",
    "fuse_attention_onnx",
    "quant_dequant_weight",
    "quantizable_layers",
    "quantize_mixed_onnx",
    "quantize_onnx",
    "sensitivity_report",
    "smooth_quant",
    "split_qkv",
]

_EXTRA = "mlsys-vision[onnx]"
OBSERVERS = ("minmax", "percentile", "mse")
ORT_METHODS = ("minmax", "percentile", "entropy")
DEFAULT_OP_TYPES = ("Conv", "MatMul", "Gemm")
# dynamic mode leaves Conv in float: ConvInteger (activations quantized per call, no fused kernel)
# ran 4.5x slower than the float Conv of the teacher's stem on an AMD EPYC (onnxruntime 1.32)
DEFAULT_DYNAMIC_OP_TYPES = ("MatMul", "Gemm")


class QuantizationError(MlsysError, RuntimeError):
    """A quantizer did not produce what was asked (e.g. it quantized layers outside the policy)."""


# ------------------------------------------------------------------------------ calibration data
class CalibrationData:
    """Real image batches for static calibration, checked against the model's input.

    Args:
        images: float array or tensor ``(n, C, H, W)`` (preprocessed like the model's inputs).
        batch_size: rows per calibration batch.
        min_batches: fewer full batches than this raise :class:`InvalidInputError`.
        input_shape: ``(C, H, W)`` the model expects (checked when given).

    Example:
        >>> import numpy as np
        >>> cal = CalibrationData(np.zeros((64, 1, 28, 28), np.float32), batch_size=16, min_batches=4)
        >>> len(cal), cal.batches()[0].shape
        (4, (16, 1, 28, 28))
    """

    def __init__(
        self,
        images: Any,
        *,
        batch_size: int = 32,
        min_batches: int = 4,
        input_shape: tuple[int, int, int] | None = None,
    ) -> None:
        for name, v in (("batch_size", batch_size), ("min_batches", min_batches)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InvalidInputError(f"{name} must be a positive int, got {v!r}")
        if isinstance(images, Tensor):
            images = images.detach().cpu().numpy()
        if not isinstance(images, np.ndarray) or images.dtype.kind != "f":
            raise InvalidInputError(
                f"calibration images must be a float array or tensor (n, C, H, W), got {type(images).__name__}"
                + (f" of dtype {images.dtype}" if isinstance(images, np.ndarray) else "")
            )
        if images.ndim != 4:
            raise DimensionMismatchError(
                f"calibration images must have shape (n, C, H, W), got {images.shape}"
            )
        if input_shape is not None and tuple(images.shape[1:]) != tuple(input_shape):
            raise DimensionMismatchError(
                f"calibration images have shape (n, {', '.join(map(str, images.shape[1:]))}) but the model "
                f"expects (n, {', '.join(map(str, input_shape))})"
            )
        if not np.isfinite(images).all():
            raise InvalidInputError("calibration images contain NaN or inf")
        n_batches = images.shape[0] // batch_size
        if n_batches < min_batches:
            raise InvalidInputError(
                f"calibration needs at least {min_batches} batches of {batch_size} images, got {images.shape[0]} "
                f"images ({n_batches} full batches)"
            )
        self.images = np.ascontiguousarray(images[: n_batches * batch_size], dtype=np.float32)
        self.batch_size = batch_size

    def __len__(self) -> int:
        return self.images.shape[0] // self.batch_size

    def batches(self) -> list[np.ndarray]:
        """The calibration batches, in order."""
        b = self.batch_size
        return [self.images[i : i + b] for i in range(0, self.images.shape[0], b)]

    def reader(self, input_name: str) -> Any:
        """An ``onnxruntime.quantization.CalibrationDataReader`` over the batches."""
        q = import_optional("onnxruntime.quantization", package="onnxruntime", extra=_EXTRA)
        batches = self.batches()

        class _Reader(q.CalibrationDataReader):  # type: ignore[misc,name-defined]
            def __init__(self) -> None:
                self._it = iter(batches)

            def get_next(self) -> dict[str, np.ndarray] | None:
                b = next(self._it, None)
                return None if b is None else {input_name: b}

            def rewind(self) -> None:
                self._it = iter(batches)

        return _Reader()


def _model_input(model: Any) -> tuple[str, tuple[int, int, int] | None]:
    inp = model.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    shape = tuple(dims[1:]) if len(dims) == 4 and all(isinstance(d, int) for d in dims[1:]) else None
    return inp.name, shape  # type: ignore[return-value]


# ------------------------------------------------------------------------ attention fusion
_WALK_OPS = ("Transpose", "Gather", "Mul", "Squeeze", "Split")


def fuse_attention_onnx(
    fp32_path: str | Path, out_path: str | Path, *, atol: float = 1e-4, seed: int = 0
) -> Path:
    """Replace every exported ViT self-attention (``qkv`` MatMul + bias, reshape to heads,
    ``q @ k^T`` scaled, Softmax, ``@ v``, heads merged) by one ``com.microsoft`` ``Attention`` node.

    The exporter writes scaled-dot-product attention as ~35 small nodes per block (shape
    arithmetic, Gather/Transpose/Mul); onnxruntime's transformer fusions do not match that
    pattern. One ``Attention`` node runs the same function with onnxruntime's CPU kernel, and
    :func:`quantize_onnx` with ``mode="dynamic", fuse_attention=True`` turns it into ``QAttention``
    (INT8 ``qkv`` weights). The fused graph is checked against the original on a seeded random
    batch of 2: a max absolute output difference above ``atol`` raises :class:`QuantizationError`.

    Raises:
        InvalidInputError: the graph has no attention of that form (no Softmax between two
            MatMuls fed by one ``qkv`` projection).

    Example:
        >>> import os, tempfile
        >>> from mlsys.vision import ViT, ViTConfig, export_onnx
        >>> d = tempfile.mkdtemp()
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=2))
        >>> p = fuse_attention_onnx(export_onnx(m, os.path.join(d, "m.onnx")), os.path.join(d, "f.onnx"))
        >>> sorted({n.op_type for n in __import__("onnx").load(str(p)).graph.node} & {"Attention", "Softmax"})
        ['Attention']
    """
    onnx = import_optional("onnx", extra=_EXTRA)
    ort = import_optional("onnxruntime", extra=_EXTRA)
    from onnx import helper, numpy_helper

    model = load_onnx(fp32_path)
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    cons: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)

    def init_name(t: str) -> str | None:  # the initializer behind t (the exporter dedupes via Identity)
        while t not in inits and t in prod and prod[t].op_type == "Identity":
            t = prod[t].input[0]
        return t if t in inits else None

    def const(name: str) -> np.ndarray | None:
        name = init_name(name) or name
        if name in inits:
            return np.asarray(numpy_helper.to_array(inits[name]))
        p = prod.get(name)
        if p is not None and p.op_type == "Constant" and p.attribute:
            return np.asarray(numpy_helper.to_array(p.attribute[0].t))
        return None

    def back(t: str) -> Any:
        n = prod.get(t)
        while n is not None and n.op_type in _WALK_OPS:
            n = prod.get(n.input[0])
        return n

    def only(t: str, op: str) -> Any:
        c = cons.get(t, [])
        return c[0] if len(c) == 1 and c[0].op_type == op else None

    fused: dict[str, Any] = {}  # qkv MatMul name -> Attention node
    dropped: set[str] = set()  # the merged-heads Reshape, whose output the Attention node takes over
    for sm in (n for n in g.node if n.op_type == "Softmax"):
        mm_qk = prod.get(sm.input[0])
        mm_av = only(sm.output[0], "MatMul")
        tr = only(mm_av.output[0], "Transpose") if mm_av is not None else None
        merged = only(tr.output[0], "Reshape") if tr is not None else None
        if mm_qk is None or mm_qk.op_type != "MatMul" or merged is None:
            continue
        rs = back(mm_qk.input[0])
        if (
            rs is None
            or rs.op_type != "Reshape"
            or back(mm_qk.input[1]) is not rs
            or back(mm_av.input[1]) is not rs
        ):
            continue
        add = prod.get(rs.input[0])
        if add is None or add.op_type != "Add":
            continue
        bias = [b for b in map(init_name, add.input) if b is not None]
        mm = next((prod[i] for i in add.input if init_name(i) is None and i in prod), None)
        weight = init_name(mm.input[1]) if mm is not None and mm.op_type == "MatMul" else None
        if len(bias) != 1 or mm is None or weight is None:
            continue
        shape_src = prod.get(rs.input[1])
        target = const(rs.input[1])
        if target is not None:
            dims = [int(v) for v in target.reshape(-1)]
        elif shape_src is not None and shape_src.op_type == "Concat":
            vals = [const(i) for i in shape_src.input]
            dims = [int(v.reshape(-1)[0]) if v is not None else -1 for v in vals]
        else:
            continue
        if len(dims) != 5 or dims[2] != 3 or dims[3] <= 0:
            continue
        att = helper.make_node(
            "Attention",
            [mm.input[0], weight, bias[0]],
            [merged.output[0]],
            name=f"{mm.name}_Attention",
            domain="com.microsoft",
            num_heads=dims[3],
        )
        fused[mm.name] = att
        dropped.add(merged.name)
    if not fused:
        raise InvalidInputError(
            f"{fp32_path} has no ViT self-attention to fuse (a Softmax between two MatMuls fed by "
            "one qkv projection reshaped to (B, N, 3, heads, head_dim))"
        )
    nodes: list[Any] = []
    for n in g.node:
        if n.name in fused:
            nodes.append(fused[n.name])
        if n.name not in dropped:
            nodes.append(n)
    need = {o.name for o in g.output}
    live: list[Any] = []
    for n in reversed(nodes):  # drop what no longer reaches an output
        if any(o in need for o in n.output):
            live.append(n)
            need.update(n.input)
    del g.node[:]
    g.node.extend(reversed(live))
    used = {i for n in g.node for i in n.input}
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    del g.value_info[:]
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out))
    name, shape = _model_input(model)
    if shape is not None:
        x = np.random.default_rng(seed).standard_normal((2, *shape)).astype(np.float32)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.log_severity_level = 3
        ref, got = (
            ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"]).run(None, {name: x})[0]
            for f in (fp32_path, out)
        )
        diff = float(np.abs(np.asarray(ref) - np.asarray(got)).max())
        if not diff <= atol:
            raise QuantizationError(
                f"the attention-fused graph differs from {fp32_path} by {diff:.2e} (> atol={atol})"
            )
    return out


# ---------------------------------------------------------------------------- onnxruntime INT8
def quantize_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    *,
    mode: str = "static",
    calibration: CalibrationData | None = None,
    method: str = "minmax",
    percentile: float = 99.99,
    per_channel: bool = True,
    op_types: Sequence[str] | None = None,
    nodes: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
    preprocess: bool = True,
    fuse_attention: bool = False,
) -> Path:
    """Quantize an FP32 ONNX model to INT8 with onnxruntime.

    Args:
        fp32_path: the model (from :func:`~mlsys.vision.export_onnx`).
        out_path: where the INT8 model goes.
        mode: ``"dynamic"`` (weights INT8 ahead of time, activations quantized per call:
            ``MatMulInteger``/``ConvInteger``) or ``"static"`` (QDQ: weights and activations INT8,
            activation ranges calibrated on ``calibration``; fused into QLinear kernels by the CPU EP).
        calibration: real batches (static only; required there).
        method: activation calibration, ``"minmax"``, ``"percentile"`` (clips outliers at
            ``percentile``) or ``"entropy"``.
        per_channel: per-output-channel weight scales.
        op_types: operator types to quantize. Default for ``"static"``: ``("Conv", "MatMul",
            "Gemm")`` (LayerNorm, Softmax and the additions stay in float, which keeps a ViT accurate
            where quantizing every operator does not). Default for ``"dynamic"``: ``("MatMul",
            "Gemm")`` (plus ``"Attention"`` with ``fuse_attention``): ``ConvInteger`` quantizes its
            input on every call and has no fused kernel, and ran 4.5x slower than the float Conv of
            the Fashion-MNIST teacher's stem (AMD EPYC, onnxruntime 1.32); pass ``op_types`` with
            ``"Conv"`` to quantize convolutions anyway.
        nodes / exclude: node names to quantize only / to leave in float.
        preprocess: run onnxruntime's ``quant_pre_process`` (shape inference, graph optimisation) first.
        fuse_attention: first replace each ViT self-attention by one ``com.microsoft`` ``Attention``
            node (:func:`fuse_attention_onnx`, parity-checked); ``"dynamic"`` then quantizes it to
            ``QAttention``. The attention products and Softmax stay in float either way. The
            measured speed-ups on the Fashion-MNIST teacher are in ``benchmarks/vision/README.md``.

    Example:
        >>> import os, tempfile, torch
        >>> from mlsys.vision import ViT, ViTConfig, export_onnx
        >>> d = tempfile.mkdtemp()
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=2))
        >>> p = export_onnx(m, os.path.join(d, "m.onnx"))
        >>> q = quantize_onnx(p, os.path.join(d, "q.onnx"), mode="dynamic")
        >>> q.name
        'q.onnx'
    """
    q = import_optional("onnxruntime.quantization", package="onnxruntime", extra=_EXTRA)
    if mode not in ("dynamic", "static"):
        raise UnknownNameError(f"mode must be 'dynamic' or 'static', got {mode!r}")
    if method not in ORT_METHODS:
        raise UnknownNameError(f"method must be one of {ORT_METHODS}, got {method!r}")
    if not 50.0 < percentile <= 100.0:
        raise InvalidInputError(f"percentile must be in (50, 100], got {percentile!r}")
    model = load_onnx(fp32_path)
    name, shape = _model_input(model)
    if mode == "static":
        if not isinstance(calibration, CalibrationData):
            raise InvalidInputError("static quantization needs calibration=CalibrationData(real images)")
        if shape is not None and tuple(calibration.images.shape[1:]) != shape:
            raise DimensionMismatchError(
                f"calibration images have shape (n, {', '.join(map(str, calibration.images.shape[1:]))}) but "
                f"{fp32_path} expects input {name!r} of shape (n, {', '.join(map(str, shape))})"
            )
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    if op_types:
        ops = list(op_types)
    elif mode == "dynamic":
        ops = [*DEFAULT_DYNAMIC_OP_TYPES, *(("Attention",) if fuse_attention else ())]
    else:
        ops = list(DEFAULT_OP_TYPES)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(fp32_path)
        if fuse_attention:
            src = fuse_attention_onnx(src, Path(tmp) / "fused.onnx")
        if preprocess:
            pre = Path(tmp) / "pre.onnx"
            q.quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
            src = pre
        kw: dict[str, Any] = dict(
            per_channel=per_channel,
            op_types_to_quantize=ops,
            nodes_to_quantize=list(nodes) if nodes else None,
            nodes_to_exclude=list(exclude) if exclude else None,
        )
        # the outputs of com.microsoft nodes have no inferred type: tell the quantizer they are float
        base_extra: dict[str, Any] = {"DefaultTensorType": 1} if fuse_attention else {}  # onnx FLOAT
        if mode == "dynamic":
            q.quantize_dynamic(
                str(src), str(out), weight_type=q.QuantType.QInt8, extra_options=base_extra, **kw
            )
        else:
            assert calibration is not None
            meth = {
                "minmax": q.CalibrationMethod.MinMax,
                "percentile": q.CalibrationMethod.Percentile,
                "entropy": q.CalibrationMethod.Entropy,
            }[method]
            extra: dict[str, Any] = dict(base_extra)
            if method == "percentile":
                extra["CalibPercentile"] = percentile
            cwd = os.getcwd()
            os.chdir(tmp)  # the calibrators write augmented models to the working directory
            try:
                q.quantize_static(
                    str(src),
                    str(out.resolve()),
                    calibration.reader(name),
                    quant_format=q.QuantFormat.QDQ,
                    activation_type=q.QuantType.QUInt8,
                    weight_type=q.QuantType.QInt8,
                    calibrate_method=meth,
                    extra_options=extra,
                    **kw,
                )
            finally:
                os.chdir(cwd)
    load_onnx(out)
    return out


# ---------------------------------------------------------------------------------- the policy
class SplitQKV(nn.Module):
    """The fused qkv projection of a ViT attention as three linear layers ``q``, ``k``, ``v``
    (same output: their concatenation), so that a policy can give each its own bit width."""

    def __init__(self, qkv: nn.Linear) -> None:
        super().__init__()
        d = qkv.out_features // 3
        bias = qkv.bias is not None
        self.q, self.k, self.v = (nn.Linear(qkv.in_features, d, bias=bias) for _ in range(3))
        with torch.no_grad():
            for i, lin in enumerate((self.q, self.k, self.v)):
                lin.weight.copy_(qkv.weight[i * d : (i + 1) * d])
                if bias:
                    assert qkv.bias is not None and lin.bias is not None
                    lin.bias.copy_(qkv.bias[i * d : (i + 1) * d])

    def forward(self, x: Tensor) -> Tensor:
        """The concatenated ``q``, ``k`` and ``v`` projections of ``x``, as the fused layer gives them."""
        return torch.cat([self.q(x), self.k(x), self.v(x)], dim=-1)


def split_qkv(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every attention's ``qkv`` linear split into ``qkv.q``/``qkv.k``/``qkv.v``
    (the outputs are unchanged up to float summation order).

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=2))
        >>> s = split_qkv(m)
        >>> x = torch.randn(2, 1, 8, 8)
        >>> bool(torch.allclose(m(x), s(x), atol=1e-6)), type(s.blocks[0].attn.qkv).__name__
        (True, 'SplitQKV')
    """
    from mlsys.vision._vit import Attention

    out = copy.deepcopy(model)
    n = 0
    for m in out.modules():
        if isinstance(m, Attention) and isinstance(m.qkv, nn.Linear):
            m.qkv = SplitQKV(m.qkv)  # type: ignore[assignment]
            n += 1
    if n == 0:
        raise InvalidInputError(
            f"{type(model).__name__} has no ViT attention with a fused qkv linear to split"
        )
    return out.eval() if not model.training else out


_QUANTIZABLE = (nn.Linear, nn.Conv2d)


def quantizable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """``{module path: module}`` of the layers a policy can name (Linear and Conv2d)."""
    return {n: m for n, m in model.named_modules() if isinstance(m, _QUANTIZABLE)}


@dataclass(frozen=True)
class MixedPrecisionPolicy:
    """Bit widths per layer, by module-path pattern or layer type; the first matching rule wins.

    Args:
        rules: ``(pattern, bits)`` pairs. A pattern is an fnmatch glob over the torch module path
            (``"blocks.*.mlp.fc1"``) or ``"type:<ClassName>"`` (``"type:Conv2d"``). ``bits`` is 8
            or 4; layers matched by no rule stay in float.
        group_size: INT4 weights are quantized in blocks of this many input channels (as
            onnxruntime's ``MatMulNBits`` does); INT8 weights per output channel.

    Every rule must match at least one layer of the model it is resolved against
    (:class:`~mlsys.common.errors.UnknownNameError` otherwise, listing the layers).

    Example:
        >>> from torch import nn
        >>> p = MixedPrecisionPolicy((("0", 8), ("type:Linear", 4)))
        >>> p.resolve(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)))
        {'0': 8, '2': 4}
    """

    rules: tuple[tuple[str, int], ...]
    group_size: int = 32

    def __post_init__(self) -> None:
        ok = isinstance(self.rules, (list, tuple)) and all(isinstance(r, (list, tuple)) for r in self.rules)
        rules = tuple(tuple(r) for r in self.rules) if ok else None
        if not rules:
            raise InvalidInputError(
                f"rules must be a non-empty sequence of (pattern, bits), got {self.rules!r}"
            )
        for r in rules:
            if (
                len(r) != 2
                or not isinstance(r[0], str)
                or not r[0]
                or r[1] not in (4, 8)
                or isinstance(r[1], bool)
            ):
                raise InvalidInputError(f"each rule must be (pattern: str, bits: 4 or 8), got {r!r}")
        object.__setattr__(self, "rules", rules)
        if (
            isinstance(self.group_size, bool)
            or not isinstance(self.group_size, int)
            or self.group_size < 16
            or self.group_size & (self.group_size - 1)
        ):
            raise InvalidInputError(f"group_size must be a power of two >= 16, got {self.group_size!r}")

    @classmethod
    def vit_qk8_v4_ffn4(cls) -> MixedPrecisionPolicy:
        """Attention Q and K at INT8, V and both FFN layers at INT4 (for a :func:`split_qkv` ViT);
        the patch embedding, attention output projection and head stay in float."""
        return cls(
            (
                ("blocks.*.attn.qkv.q", 8),
                ("blocks.*.attn.qkv.k", 8),
                ("blocks.*.attn.qkv.v", 4),
                ("blocks.*.mlp.fc1", 4),
                ("blocks.*.mlp.fc2", 4),
            )
        )

    @staticmethod
    def _matches(pattern: str, name: str, module: nn.Module) -> bool:
        if pattern.startswith("type:"):
            return type(module).__name__ == pattern[5:]
        return fnmatch.fnmatchcase(name, pattern)

    def resolve(self, model: nn.Module) -> dict[str, int]:
        """``{module path: bits}`` of the layers of ``model`` the policy quantizes."""
        layers = quantizable_layers(model)
        out: dict[str, int] = {}
        used = [False] * len(self.rules)
        for name, mod in layers.items():
            for i, (pat, bits) in enumerate(self.rules):
                if self._matches(pat, name, mod):
                    used[i] = True
                    out[name] = int(bits)
                    break
        unused = [self.rules[i][0] for i, u in enumerate(used) if not u]
        if unused:
            shown = ", ".join(list(layers)[:40]) + (" ..." if len(layers) > 40 else "")
            raise UnknownNameError(
                f"policy rule(s) {unused} match no Linear/Conv2d layer of the {type(model).__name__} "
                f"(split_qkv first for qkv.q/k/v); its layers are: {shown}"
            )
        return out


# ----------------------------------------------------------------------------- fake quantization
def _amax(
    t: Tensor, dim: int | None, observer: str, percentile: float, bits: int, signed: bool = True
) -> Tensor:
    """Clipping magnitude per row (``dim=1`` reduces each row of a 2-D view) or per tensor."""
    a = t.abs() if signed else t
    flat = a.reshape(a.shape[0], -1) if dim is not None else a.reshape(1, -1)
    if observer == "minmax":
        return flat.amax(dim=1)
    if observer == "percentile":
        return torch.quantile(flat.float(), percentile / 100.0, dim=1)
    # mse: the clipping ratio (of the max) minimising the squared quantization error per row
    qmax = 2 ** (bits - 1) - 1
    top = flat.amax(dim=1).clamp_min(1e-12)
    best = top.clone()
    best_err = torch.full_like(top, float("inf"))
    for r in torch.linspace(0.3, 1.0, 36):
        s = (top * r / qmax)[:, None]
        err = ((torch.clamp(torch.round(flat / s), -qmax - 1, qmax) * s - flat) ** 2).sum(dim=1)
        better = err < best_err
        best = torch.where(better, top * r, best)
        best_err = torch.where(better, err, best_err)
    return best


def quant_dequant_weight(
    w: Tensor,
    bits: int,
    *,
    group_size: int | None = None,
    observer: str = "minmax",
    percentile: float = 99.99,
) -> Tensor:
    """Symmetric signed fake quantization of a weight: per output channel, or per group of
    ``group_size`` input channels (INT4 blocks), clipping magnitudes from ``observer``."""
    qmax = 2 ** (bits - 1) - 1
    shape = w.shape
    w2 = w.detach().reshape(shape[0], -1)
    if group_size is not None and w2.shape[1] > group_size:
        pad = (-w2.shape[1]) % group_size
        wp = F.pad(w2, (0, pad))
        g = wp.reshape(-1, group_size)
        s = (_amax(g, 1, observer, percentile, bits) / qmax).clamp_min(1e-12)[:, None]
        deq = (torch.clamp(torch.round(g / s), -qmax - 1, qmax) * s).reshape(wp.shape)[:, : w2.shape[1]]
        return deq.reshape(shape)
    s = (_amax(w2, 1, observer, percentile, bits) / qmax).clamp_min(1e-12)[:, None]
    return (torch.clamp(torch.round(w2 / s), -qmax - 1, qmax) * s).reshape(shape)


class FakeQuantInput(nn.Module):
    """Asymmetric UINT8 per-tensor fake quantization of a layer's input (static ranges)."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        lo, hi = min(lo, 0.0), max(hi, 0.0)
        self.scale = max(hi - lo, 1e-12) / 255.0
        self.zero = round(-lo / self.scale)

    def forward(self, x: Tensor) -> Tensor:
        q = torch.clamp(torch.round(x / self.scale) + self.zero, 0, 255)
        return (q - self.zero) * self.scale


class _QuantWrapped(nn.Module):
    def __init__(self, layer: nn.Module, act: FakeQuantInput | None) -> None:
        super().__init__()
        self.act = act
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer(self.act(x) if self.act is not None else x)


def _act_range(samples: list[Tensor], observer: str, percentile: float) -> tuple[float, float]:
    x = torch.cat([s.reshape(-1) for s in samples]).float()
    if observer == "percentile":
        k = min(x.numel(), 1_000_000)
        sub = (
            x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:k]]
            if x.numel() > k
            else x
        )
        return float(torch.quantile(sub, 1 - percentile / 100.0)), float(
            torch.quantile(sub, percentile / 100.0)
        )
    lo, hi = float(x.min()), float(x.max())
    if observer == "minmax":
        return lo, hi
    best, best_err = (lo, hi), float("inf")
    for r in np.linspace(0.3, 1.0, 36):
        fq = FakeQuantInput(lo * r, hi * r)
        err = float(((fq(x) - x) ** 2).sum())
        if err < best_err:
            best, best_err = (lo * r, hi * r), err
    return best


def _set_module(root: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    setattr(parent, child, new)


def fake_quantize(
    model: nn.Module,
    policy: MixedPrecisionPolicy | dict[str, int],
    *,
    calibration: Tensor | None = None,
    observer: str = "minmax",
    percentile: float = 99.99,
    quantize_activations: bool = True,
) -> nn.Module:
    """A copy of ``model`` whose policy layers compute with fake-quantized weights (INT8 per output
    channel; INT4 per group of ``policy.group_size`` input channels, as ``MatMulNBits``) and, for
    INT8 layers with ``quantize_activations``, fake-quantized UINT8 inputs whose ranges come from
    ``calibration`` batches (as static QDQ). INT4 layers are weight-only (as ``MatMulNBits``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
        >>> fq = fake_quantize(m, {"0": 8, "2": 4}, calibration=torch.randn(64, 8))
        >>> type(fq[0]).__name__, fq(torch.randn(3, 8)).shape
        ('_QuantWrapped', torch.Size([3, 2]))
    """
    if observer not in OBSERVERS:
        raise UnknownNameError(f"observer must be one of {OBSERVERS}, got {observer!r}")
    if isinstance(policy, MixedPrecisionPolicy):
        bits_of, group = policy.resolve(model), policy.group_size
    elif isinstance(policy, dict):
        layers = quantizable_layers(model)
        bad = [k for k in policy if k not in layers]
        if bad or not policy:
            raise UnknownNameError(
                f"layers {bad or '(none)'} are not Linear/Conv2d layers of the model; it has {list(layers)[:40]}"
            )
        if any(b not in (4, 8) for b in policy.values()):
            raise InvalidInputError(f"bit widths must be 4 or 8, got {sorted(set(policy.values()))}")
        bits_of, group = dict(policy), 32
    else:
        raise InvalidInputError(
            f"policy must be a MixedPrecisionPolicy or a {{layer: bits}} dict, got {type(policy).__name__}"
        )
    out = copy.deepcopy(model).eval()
    ranges: dict[str, tuple[float, float]] = {}
    act_layers = [n for n, b in bits_of.items() if b == 8] if quantize_activations else []
    if act_layers:
        if calibration is None:
            raise InvalidInputError("INT8 activation fake-quant needs calibration batches (calibration=...)")
        samples: dict[str, list[Tensor]] = {n: [] for n in act_layers}
        hooks = [
            out.get_submodule(n).register_forward_pre_hook(
                lambda _m, a, n=n: samples[n].append(a[0].detach())
            )
            for n in act_layers
        ]
        try:
            with torch.no_grad():
                for i in range(0, calibration.shape[0], 256):
                    out(calibration[i : i + 256])
        finally:
            for h in hooks:
                h.remove()
        ranges = {n: _act_range(s, observer, percentile) for n, s in samples.items()}
    with torch.no_grad():
        for name, bits in bits_of.items():
            layer = out.get_submodule(name)
            w = layer.weight
            assert isinstance(w, Tensor)
            if isinstance(layer, nn.Linear) and bits == 4:
                w.copy_(
                    quant_dequant_weight(w, 4, group_size=group, observer=observer, percentile=percentile)
                )
            else:
                w.copy_(quant_dequant_weight(w, bits, observer=observer, percentile=percentile))
            act = FakeQuantInput(*ranges[name]) if name in ranges else None
            _set_module(out, name, _QuantWrapped(layer, act))
    return out


# ------------------------------------------------------------------------------------ SmoothQuant
def smooth_quant(model: nn.Module, calibration: Tensor, *, alpha: float = 0.5) -> nn.Module:
    """SmoothQuant scale migration for a :class:`~mlsys.vision.ViT` (or a :func:`split_qkv` one):
    per input channel ``s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)``; the LayerNorm before each
    block's attention and MLP is divided by ``s`` and the linear layers reading it multiplied by
    ``s`` (folded into the weights, so the FP32 function is unchanged and the export needs no new op),
    which moves activation outliers into the weights, where per-channel scales absorb them.

    Example:
        >>> import torch
        >>> from mlsys.vision import ViT, ViTConfig
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=2, embed_dim=8, depth=1, num_heads=2)).eval()
        >>> x = torch.randn(16, 1, 8, 8)
        >>> bool(torch.allclose(smooth_quant(m, x)(x), m(x), atol=1e-5))
        True
    """
    from mlsys.vision._vit import Block

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise InvalidInputError(f"alpha must be in [0, 1], got {alpha!r}")
    out = copy.deepcopy(model).eval()
    pairs: list[tuple[nn.LayerNorm, list[nn.Linear]]] = []
    for blk in out.modules():
        if isinstance(blk, Block):
            qkv = blk.attn.qkv
            readers = [qkv] if isinstance(qkv, nn.Linear) else [qkv.q, qkv.k, qkv.v]  # type: ignore[union-attr]
            pairs += [(blk.norm1, readers), (blk.norm2, [blk.mlp.fc1])]  # type: ignore[list-item]
    if not pairs:
        raise InvalidInputError(f"{type(model).__name__} has no ViT blocks to smooth")
    if not isinstance(calibration, Tensor) or calibration.ndim != 4:
        raise InvalidInputError("calibration must be a (n, C, H, W) tensor of real images")
    amax: dict[int, Tensor] = {}

    def hook(i: int) -> Any:
        def f(_m: nn.Module, _a: Any, y: Tensor) -> None:
            cur = y.detach().abs().reshape(-1, y.shape[-1]).amax(dim=0)
            amax[i] = torch.maximum(amax[i], cur) if i in amax else cur

        return f

    hooks = [ln.register_forward_hook(hook(i)) for i, (ln, _) in enumerate(pairs)]
    try:
        with torch.no_grad():
            for i in range(0, calibration.shape[0], 256):
                out(calibration[i : i + 256])
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for i, (ln, readers) in enumerate(pairs):
            wmax = torch.stack([r.weight.abs().amax(dim=0) for r in readers]).amax(dim=0).clamp_min(1e-5)
            s = (amax[i].clamp_min(1e-5) ** alpha / wmax ** (1 - alpha)).clamp(1e-2, 1e2)
            ln.weight.div_(s)
            ln.bias.div_(s)
            for r in readers:
                r.weight.mul_(s[None, :])
    return out


# ------------------------------------------------------------------------------ sensitivity
@dataclass
class LayerSensitivity:
    """Accuracy when only ``layer`` is quantized to ``bits`` (``drop`` in points vs float)."""

    layer: str
    bits: int
    accuracy: float
    drop: float


class SensitivityReport(list[LayerSensitivity], TabularDisplay):
    """What :func:`sensitivity_report` returns: a list of :class:`LayerSensitivity`, worst layer
    first, that displays as an HTML table in a notebook and converts with :meth:`to_pandas`.

    Example:
        >>> r = SensitivityReport([LayerSensitivity("blocks.0.fc1", 4, 0.81, 2.5)])
        >>> r[0].layer, r.to_pandas().loc["blocks.0.fc1", "drop"]  # doctest: +SKIP
        ('blocks.0.fc1', 2.5)
    """

    _pandas_extra = "mlsys-vision[pandas]"

    def _display_table(self) -> DisplayTable:
        bits = sorted({r.bits for r in self})
        return DisplayTable(
            f"Per-layer sensitivity ({'/'.join(map(str, bits)) or '-'} bits, one layer at a time)",
            ("layer", "bits", "accuracy", "drop"),
            tuple((r.layer, r.bits, r.accuracy, r.drop) for r in self),
            index="layer",
            notes=("drop: accuracy points lost against the float model",),
        )


def sensitivity_report(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    bits: int = 8,
    layers: Iterable[str] | None = None,
    calibration: Tensor | None = None,
    observer: str = "minmax",
) -> SensitivityReport:
    """Per-layer sensitivity: quantize one layer at a time (fake-quant), evaluate on ``(x, y)``;
    sorted by accuracy drop, worst first, as a :class:`SensitivityReport` (a list that displays
    as a table).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Flatten(), nn.Linear(4, 3)).eval()
        >>> x = torch.randn(32, 1, 2, 2); y = m(x).argmax(-1)
        >>> [r.layer for r in sensitivity_report(m, x, y, bits=4)]
        ['1']
    """
    from mlsys.vision._train import evaluate

    if bits not in (4, 8):
        raise InvalidInputError(f"bits must be 4 or 8, got {bits!r}")
    names = list(layers) if layers is not None else list(quantizable_layers(model))
    base = evaluate(model, x, y).accuracy
    cal = calibration if calibration is not None else x[:256]
    out = []
    for n in names:
        fq = fake_quantize(model, {n: bits}, calibration=cal, observer=observer)
        acc = evaluate(fq, x, y).accuracy
        out.append(LayerSensitivity(n, bits, acc, 100.0 * (base - acc)))
    return SensitivityReport(sorted(out, key=lambda r: -r.drop))


# --------------------------------------------------------------------------- mixed INT8/INT4 ONNX
@dataclass
class MixedQuantResult:
    """What :func:`quantize_mixed_onnx` wrote: the file and the verified node kinds."""

    path: Path
    int8_nodes: list[str] = field(default_factory=list)
    int4_nodes: list[str] = field(default_factory=list)


def quantize_mixed_onnx(
    fp32_path: str | Path,
    out_path: str | Path,
    bits: dict[str, int],
    *,
    calibration: CalibrationData | None = None,
    method: str = "minmax",
    group_size: int = 32,
) -> MixedQuantResult:
    """Real-kernel mixed precision: the INT8 layers of ``bits`` (``{torch module path: 8 or 4}``, e.g.
    :meth:`MixedPrecisionPolicy.resolve`) as static QDQ, the INT4 ones as ``MatMulNBits``
    (weight-only, blocks of ``group_size``, symmetric). The output graph is inspected: a node
    quantized outside the request raises :class:`QuantizationError`.
    """
    import_optional("onnxruntime.quantization", package="onnxruntime", extra=_EXTRA)
    model = load_onnx(fp32_path)
    layers = onnx_layers(model)
    missing = [k for k in bits if k not in layers]
    if missing:
        raise UnknownNameError(
            f"layers {missing} have no Conv/MatMul/Gemm node in {fp32_path}; it has {sorted(layers)}"
        )
    want8 = [n for k, b in bits.items() if b == 8 for n in layers[k]]
    want4 = [n for k, b in bits.items() if b == 4 for n in layers[k]]
    nodes_by_name = {n.name: n for n in model.graph.node}
    bad4 = [n for n in want4 if nodes_by_name[n].op_type != "MatMul"]
    if bad4:
        raise InvalidInputError(f"INT4 (MatMulNBits) needs MatMul nodes; {bad4} are not")
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(fp32_path)
        if want8:
            stage = quantize_onnx(
                stage,
                Path(tmp) / "int8.onnx",
                mode="static",
                calibration=calibration,
                method=method,
                nodes=want8,
                preprocess=False,
            )
        m = load_onnx(stage)
        if want4:
            nb = import_optional(
                "onnxruntime.quantization.matmul_nbits_quantizer", package="onnxruntime", extra=_EXTRA
            )
            all_mm = [n.name for n in m.graph.node if n.op_type == "MatMul"]
            cfg = nb.DefaultWeightOnlyQuantConfig(block_size=group_size, is_symmetric=True, bits=4)
            quant = nb.MatMulNBitsQuantizer(
                m,
                nodes_to_include=want4,
                # onnxruntime's nodes_to_include adds to its op-type selection instead of
                # restricting it: every other MatMul must be excluded explicitly
                nodes_to_exclude=[n for n in all_mm if n not in set(want4)],
                algo_config=cfg,
            )
            quant.process()
            m = quant.model.model
        import onnx

        onnx.save(m, str(out))
    got = quantized_layers(load_onnx(out))
    int8 = sorted(n for n, k in got.items() if k == "int8")
    int4 = sorted(n for n, k in got.items() if k == "int4")
    # MatMulNBits nodes are renamed <name>_Q4 by onnxruntime
    int4_src = sorted(n[: -len("_Q4")] if n.endswith("_Q4") else n for n in int4)
    if int8 != sorted(want8) or int4_src != sorted(want4):
        raise QuantizationError(
            f"the quantized graph does not match the policy: INT8 {int8} (asked {sorted(want8)}), "
            f"INT4 {int4_src} (asked {sorted(want4)})"
        )
    return MixedQuantResult(out, int8, int4)
