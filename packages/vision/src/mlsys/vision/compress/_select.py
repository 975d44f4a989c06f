"""Choose the ONNX model to deploy by measuring every candidate on this machine.

A quantized model is not faster by construction: onnxruntime's INT8 kernels lose to its float
kernels on small convolutions and short GEMMs, and which wins depends on the CPU (AVX-512 VNNI,
AMX, AMD or Intel) and the thread count. :func:`choose_onnx_model` therefore times the FP32
baseline and each quantized variant side by side (each in its own process by default, candidates
interleaved over several rounds, a fixed thread count), compares their outputs with the
baseline's (top-1 agreement, and accuracy when labels are given) and picks the fastest candidate
that keeps the accuracy budget *and* beats the baseline by a margin; otherwise the baseline. The
decision comes from the user's machine and data, not from a figure measured on ours.

The worker that times one candidate is ``_main`` of this module in a fresh interpreter
(``python -c``); it prints one JSON line.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mlsys.common._display import DisplayTable, TabularDisplay, new_figure
from mlsys.common.errors import (
    DimensionMismatchError,
    InvalidInputError,
    UnknownNameError,
)
from mlsys.vision._onnx import onnx_session
from mlsys.vision.compress._quant import QuantizationError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["DeploymentChoice", "OnnxCandidate", "choose_onnx_model"]

#: Images kept for timing (cycled through); accuracy and agreement use all of them.
_TIMING_IMAGES = 512
_EVAL_BATCH = 64


@dataclass(frozen=True)
class OnnxCandidate:
    """One measured model of a :class:`DeploymentChoice`.

    Attributes:
        name / path / file_bytes: the candidate and its file.
        p50_ms / p99_ms: per-call latency percentiles by batch size (median over the rounds of
            each round's percentile).
        speedup: the baseline's batch-1 p50 over this one's (> 1 = faster than the baseline).
        agreement: share of the images whose top-1 class equals the baseline's.
        max_abs_diff: the largest absolute output difference from the baseline.
        accuracy / accuracy_drop: top-1 accuracy, and points lost against the baseline (None
            without labels).
        eligible: keeps the accuracy budget and beats the baseline by ``min_speedup``.
        reason: why it was chosen, or why not.
    """

    name: str
    path: str
    file_bytes: int
    p50_ms: dict[int, float]
    p99_ms: dict[int, float]
    speedup: float
    agreement: float
    max_abs_diff: float
    accuracy: float | None
    accuracy_drop: float | None
    eligible: bool
    reason: str


@dataclass(repr=False)
class DeploymentChoice(TabularDisplay):
    """What :func:`choose_onnx_model` returns: the chosen candidate and every measurement behind it.

    Displays as an HTML table in a notebook, converts with :meth:`to_pandas`, plots accuracy (or
    agreement) against batch-1 latency with :meth:`plot`.

    Example:
        >>> c = OnnxCandidate("fp32", "m.onnx", 10, {1: 2.0}, {1: 2.5}, 1.0, 1.0, 0.0, None, None, True, "baseline")
        >>> d = DeploymentChoice("fp32", "fp32", [c], threads=1, calls=10, rounds=1)
        >>> d["fp32"].speedup, d.chosen_path
        (1.0, 'm.onnx')
    """

    chosen: str
    baseline: str
    candidates: list[OnnxCandidate]
    threads: int
    calls: int
    rounds: int
    isolate: bool = True
    max_accuracy_drop: float = 0.5
    min_agreement: float = 0.99
    min_speedup: float = 1.1
    load_average: list[float] = field(default_factory=list)
    _pandas_extra = "mlsys-vision[pandas]"

    def __getitem__(self, name: str) -> OnnxCandidate:
        for c in self.candidates:
            if c.name == name:
                return c
        raise UnknownNameError(f"no candidate {name!r}; candidates: {[c.name for c in self.candidates]}")

    def __repr__(self) -> str:
        speed = ", ".join(f"{c.name!r}: {c.speedup:.2f}x" for c in self.candidates)
        return f"DeploymentChoice(chosen={self.chosen!r}, baseline={self.baseline!r}, speedups={{{speed}}})"

    @property
    def chosen_path(self) -> str:
        """The file of the chosen candidate."""
        return self[self.chosen].path

    def summary(self) -> str:
        """One line: what was chosen and by how much."""
        c = self[self.chosen]
        if self.chosen == self.baseline:
            best = max(self.candidates, key=lambda r: r.speedup if r.name != self.baseline else -1.0)
            other = f"; fastest other: {best.name!r}, {best.reason}" if best.name != self.baseline else ""
            return f"kept the baseline {self.baseline!r}{other}"
        drop = f", accuracy {-c.accuracy_drop:+.2f} points" if c.accuracy_drop is not None else ""
        return f"chose {c.name!r}: {c.speedup:.2f}x the baseline {self.baseline!r} at batch 1{drop}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        d = asdict(self)
        for c in d["candidates"]:
            c["p50_ms"] = {str(k): v for k, v in c["p50_ms"].items()}
            c["p99_ms"] = {str(k): v for k, v in c["p99_ms"].items()}
        return d

    def _display_table(self) -> DisplayTable:
        batches = sorted({b for c in self.candidates for b in c.p50_ms})
        cols = ["name", "chosen", "speedup"]
        for b in batches:
            cols += [f"b{b}_p50_ms", f"b{b}_p99_ms"]
        cols += ["agreement", "accuracy", "accuracy_drop", "file_kib", "reason"]
        rows = []
        for c in self.candidates:
            row: list[Any] = [c.name, c.name == self.chosen, c.speedup]
            for b in batches:
                row += [c.p50_ms.get(b), c.p99_ms.get(b)]
            row += [c.agreement, c.accuracy, c.accuracy_drop, c.file_bytes / 1024, c.reason]
            rows.append(tuple(row))
        return DisplayTable(
            f"ONNX deployment choice: {self.chosen}",
            tuple(cols),
            tuple(rows),
            index="name",
            details=(
                ("baseline", self.baseline),
                ("threads", self.threads),
                ("batch-1 calls per round", self.calls),
                ("rounds", self.rounds),
                ("own process per candidate", self.isolate),
                ("max accuracy drop (points)", self.max_accuracy_drop),
                ("min agreement (no labels)", self.min_agreement),
                ("min speed-up", self.min_speedup),
                ("load average (before, after)", self.load_average),
            ),
            notes=("speedup: the baseline's batch-1 p50 over the candidate's",),
        )

    def plot(self) -> Figure:
        """Accuracy (or top-1 agreement with the baseline, without labels) against batch-1 p50
        latency, one point per candidate; the chosen one is ringed."""
        fig = new_figure(figsize=(6, 4), layout="constrained")
        ax = fig.add_subplot()
        labelled = all(c.accuracy is not None for c in self.candidates)
        for c in self.candidates:
            y = 100 * (c.accuracy if labelled and c.accuracy is not None else c.agreement)
            x = c.p50_ms[1]
            ax.scatter([x], [y], s=30, color="tab:green" if c.eligible else "tab:gray", zorder=3)
            if c.name == self.chosen:
                ax.scatter([x], [y], s=160, facecolors="none", edgecolors="tab:red", zorder=4)
            ax.annotate(c.name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
        ax.set_xlabel(f"batch-1 p50 latency (ms, {self.threads} thread{'s' * (self.threads > 1)})")
        ax.set_ylabel("top-1 accuracy (%)" if labelled else "top-1 agreement with the baseline (%)")
        ax.set_title(f"chosen: {self.chosen}")
        ax.grid(alpha=0.3)
        return fig


# ----------------------------------------------------------------------------------- the rule
def _decide(
    rows: list[dict[str, Any]],
    baseline: str,
    *,
    labelled: bool,
    max_accuracy_drop: float,
    min_agreement: float,
    min_speedup: float,
) -> tuple[str, list[tuple[bool, str]]]:
    """The choice from measured rows (``name``, ``speedup``, ``agreement``, ``accuracy_drop``):
    the eligible candidate with the largest speed-up, or the baseline when none is eligible.
    Returns the chosen name and ``(eligible, reason)`` per row, in order."""
    verdicts: list[tuple[bool, str]] = []
    for r in rows:
        if r["name"] == baseline:
            verdicts.append((True, "baseline"))
            continue
        if labelled:
            drop = float(r["accuracy_drop"])
            if not drop <= max_accuracy_drop:
                verdicts.append((False, f"accuracy drop {drop:.2f} > {max_accuracy_drop:g} points"))
                continue
        elif not r["agreement"] >= min_agreement:
            verdicts.append(
                (False, f"top-1 agreement {100 * r['agreement']:.2f}% < {100 * min_agreement:g}% (no labels)")
            )
            continue
        s = float(r["speedup"])
        if s < 1.0:
            verdicts.append((False, f"slower than the baseline ({s:.2f}x)"))
        elif s < min_speedup:
            verdicts.append((False, f"speed-up {s:.2f}x < min_speedup {min_speedup:g}"))
        else:
            verdicts.append((True, f"{s:.2f}x"))
    others = [(r, v) for r, v in zip(rows, verdicts, strict=True) if v[0] and r["name"] != baseline]
    if not others:
        return baseline, [
            (e, "baseline: no candidate is eligible" if w == "baseline" else w) for e, w in verdicts
        ]
    best = max(others, key=lambda t: float(t[0]["speedup"]))[0]["name"]
    out = []
    for r, (e, w) in zip(rows, verdicts, strict=True):
        if r["name"] == best:
            w = f"chosen: fastest eligible ({w})"
        elif e and r["name"] != baseline:
            w = f"eligible ({w}), not the fastest"
        out.append((e, w))
    return best, out


# ------------------------------------------------------------------------------------- checks
def _as_path(value: Any, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or isinstance(value, bytes):
        raise InvalidInputError(
            f"candidate {name!r} must be a path (str or os.PathLike), got {type(value).__name__}"
        )
    return Path(value)


def _as_images(images: Any) -> np.ndarray:
    if hasattr(images, "detach"):  # a torch tensor
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise InvalidInputError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
    if images.ndim < 2 or images.shape[0] == 0:
        raise InvalidInputError(f"images must be a non-empty (n, ...) batch, got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.floating):
        raise InvalidInputError(f"images must be float (preprocessed model inputs), got dtype {images.dtype}")
    x = np.ascontiguousarray(images, dtype=np.float32)
    if not np.isfinite(x).all():
        raise InvalidInputError("images contain NaN or infinite values")
    return x


def _check_model(name: str, path: Path, sess: Any, x: np.ndarray, batch_sizes: Sequence[int]) -> str:
    """The single float input of ``sess``, checked against the images and the batch sizes."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise DimensionMismatchError(
            f"candidate {name!r} ({path}) has {len(inputs)} inputs {[i.name for i in inputs]}; expected one image input"
        )
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise DimensionMismatchError(
            f"candidate {name!r} ({path}) takes {inp.type}; expected tensor(float) images"
        )
    shape = list(inp.shape)
    if len(shape) != x.ndim:
        raise DimensionMismatchError(
            f"candidate {name!r} ({path}) expects a {len(shape)}-d input {shape}, the images are {x.ndim}-d {x.shape}"
        )
    for got, want in zip(shape[1:], x.shape[1:], strict=True):
        if isinstance(got, int) and got != want:
            raise DimensionMismatchError(
                f"candidate {name!r} ({path}) expects input {inp.name!r} of shape {shape}, "
                f"the images have shape (n, {', '.join(map(str, x.shape[1:]))})"
            )
    if isinstance(shape[0], int) and any(b != shape[0] for b in (*batch_sizes, _EVAL_BATCH)):
        raise DimensionMismatchError(
            f"candidate {name!r} ({path}) has a fixed batch of {shape[0]}; timing batches {list(batch_sizes)} "
            "and evaluation need a dynamic batch axis (export_onnx writes one)"
        )
    return str(inp.name)


def _outputs(sess: Any, input_name: str, x: np.ndarray) -> np.ndarray:
    out = [sess.run(None, {input_name: x[i : i + _EVAL_BATCH]})[0] for i in range(0, len(x), _EVAL_BATCH)]
    y = np.concatenate(out)
    if y.ndim != 2 or y.shape[0] != len(x):
        raise DimensionMismatchError(f"expected (n, classes) logits as the first output, got shape {y.shape}")
    return y


# ------------------------------------------------------------------------------------- timing
def _calls_at(calls: int, batch: int) -> int:
    """Timed calls at ``batch``: as many images as ``calls`` single-image calls, at least 10 calls."""
    return max(10, math.ceil(calls / batch))


def _time_model(
    path: str, threads: int, calls: int, batch_sizes: Sequence[int], x: np.ndarray
) -> dict[str, Any]:
    """Batch-``b`` latency percentiles of one model in this process (warm-up first)."""
    sess = onnx_session(path, threads=threads)
    name = sess.get_inputs()[0].name
    n = len(x)
    out: dict[str, Any] = {"p50_ms": {}, "p99_ms": {}}
    for b in batch_sizes:
        starts = range(0, n - b + 1, b) if n >= 2 * b else range(1)
        slices = [x[s : s + b] for s in starts]
        k = _calls_at(calls, b)
        for i in range(min(20, max(3, k // 10))):
            sess.run(None, {name: slices[i % len(slices)]})
        ts = np.empty(k)
        for i in range(k):
            xi = slices[i % len(slices)]
            t0 = time.perf_counter()
            sess.run(None, {name: xi})
            ts[i] = time.perf_counter() - t0
        out["p50_ms"][str(b)] = float(np.percentile(ts, 50) * 1e3)
        out["p99_ms"][str(b)] = float(np.percentile(ts, 99) * 1e3)
    return out


def _package_paths() -> list[str]:
    """Where ``mlsys.common`` and ``mlsys.vision`` are imported from (for the worker's PYTHONPATH)."""
    import mlsys.common
    import mlsys.vision

    return list(
        dict.fromkeys(str(Path(m.__file__ or "").resolve().parents[2]) for m in (mlsys.common, mlsys.vision))
    )


def _time_in_subprocess(
    path: str, threads: int, calls: int, batch_sizes: Sequence[int], npy: Path, name: str
) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*_package_paths(), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [
        sys.executable,
        "-c",
        "import sys; from mlsys.vision.compress._select import _main; _main(sys.argv[1:])",
        path,
        str(threads),
        str(calls),
        ",".join(map(str, batch_sizes)),
        str(npy),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise QuantizationError(
            f"timing candidate {name!r} ({path}) in its own process failed (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-1500:]}"
        )
    got: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return got


def _load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return []


def choose_onnx_model(
    candidates: Mapping[str, str | Path] | Sequence[str | Path],
    images: Any,
    labels: Any = None,
    *,
    baseline: str | None = None,
    threads: int = 1,
    batch_sizes: Sequence[int] = (1,),
    calls: int = 200,
    rounds: int = 3,
    max_accuracy_drop: float = 0.5,
    min_agreement: float = 0.99,
    min_speedup: float = 1.1,
    isolate: bool = True,
    progress: bool = True,
) -> DeploymentChoice:
    """Time the FP32 baseline and every quantized variant on this machine and choose what to deploy.

    Each round times every candidate once (in its own process when ``isolate``, so no two
    thread pools share one; the order is reversed every other round), ``calls`` calls per batch
    size. Then each candidate's outputs on ``images`` are compared with the baseline's. A
    candidate is *eligible* when it keeps the accuracy budget (``max_accuracy_drop`` points with
    ``labels``; without labels, top-1 agreement with the baseline of at least ``min_agreement``)
    and its batch-1 p50 beats the baseline's by ``min_speedup``. The fastest eligible candidate is
    chosen, or the baseline when none is: an INT8 model slower than FP32 (onnxruntime's
    quantizer makes them: small convolutions, short GEMMs, Q/DQ around float-only operators) is
    never deployed by mistake.

    Args:
        candidates: ``{name: path}`` (or paths, named by their stem) of ONNX models with the same
            image input, e.g. from :func:`~mlsys.vision.export_onnx` and :func:`quantize_onnx`.
        images: real, preprocessed inputs ``(n, C, H, W)`` (numpy or torch, float); the first 512
            are cycled through for timing, all are used for agreement and accuracy.
        labels: optional ``(n,)`` class ids, for accuracy.
        baseline: the reference candidate (default: the first).
        threads: onnxruntime intra-op threads of every session (what the service will use).
        batch_sizes: batch sizes timed; the choice reads batch 1 (always timed).
        calls / rounds: timed batch-1 calls per round (a batch of ``b`` gets as many images,
            ``ceil(calls / b)`` calls, at least 10), and interleaved rounds.
        max_accuracy_drop / min_agreement / min_speedup: the rule above; ``min_speedup`` keeps a
            gain within the run-to-run noise (a few per cent on a busy machine) from deciding.
        isolate: time each candidate in a fresh Python process (``False``: in this process,
            faster, for tests and quick looks).
        progress: a progress bar over rounds x candidates.

    Returns:
        A :class:`DeploymentChoice` (``chosen``, ``chosen_path``, per-candidate measurements).

    Example:
        >>> import os, tempfile, torch
        >>> from mlsys.vision import ViT, ViTConfig, export_onnx
        >>> from mlsys.vision.compress import quantize_onnx
        >>> d = tempfile.mkdtemp()
        >>> m = ViT(ViTConfig(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=1, num_heads=2))
        >>> fp32 = export_onnx(m, os.path.join(d, "m.onnx"))
        >>> int8 = quantize_onnx(fp32, os.path.join(d, "q.onnx"), mode="dynamic")
        >>> r = choose_onnx_model({"fp32": fp32, "int8": int8}, torch.randn(64, 1, 8, 8),
        ...                       calls=20, rounds=1, isolate=False, progress=False)
        >>> r.chosen in ("fp32", "int8"), r["fp32"].speedup
        (True, 1.0)
    """
    from tqdm.auto import tqdm

    if isinstance(candidates, Mapping):
        if any(not isinstance(k, str) or not k for k in candidates):
            raise InvalidInputError(
                f"candidate names must be non-empty strings, got {list(candidates)!r:.200}"
            )
        named = {k: _as_path(v, k) for k, v in candidates.items()}
    elif isinstance(candidates, (str, os.PathLike)):
        raise InvalidInputError(
            "candidates must be a mapping {name: path} or a sequence of paths, not one path"
        )
    elif not isinstance(candidates, Sequence) or isinstance(candidates, (bytes, bytearray)):
        raise InvalidInputError(
            f"candidates must be a mapping {{name: path}} or a sequence of paths, got {type(candidates).__name__}"
        )
    else:
        paths = [_as_path(p, f"#{i}") for i, p in enumerate(candidates)]
        named = {p.stem: p for p in paths}
        if len(named) != len(paths):
            raise InvalidInputError(
                f"two candidates share a file name {[p.stem for p in paths]}; pass {{name: path}} instead"
            )
    if len(named) < 2:
        raise InvalidInputError(f"need the baseline and at least one other candidate, got {list(named)}")
    base = next(iter(named)) if baseline is None else baseline
    if base not in named:
        raise UnknownNameError(f"baseline {base!r} is not a candidate; candidates: {list(named)}")
    for nm, v in (("threads", threads), ("calls", calls), ("rounds", rounds)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise InvalidInputError(f"{nm} must be a positive int, got {v!r}")
    bs = sorted({1, *batch_sizes})
    if any(isinstance(b, bool) or not isinstance(b, int) or b <= 0 for b in bs):
        raise InvalidInputError(f"batch_sizes must be positive ints, got {list(batch_sizes)!r}")
    if not (isinstance(max_accuracy_drop, (int, float)) and max_accuracy_drop >= 0):
        raise InvalidInputError(f"max_accuracy_drop must be >= 0 points, got {max_accuracy_drop!r}")
    if not (isinstance(min_agreement, (int, float)) and 0.0 <= min_agreement <= 1.0):
        raise InvalidInputError(f"min_agreement must be in [0, 1], got {min_agreement!r}")
    if not (isinstance(min_speedup, (int, float)) and math.isfinite(min_speedup) and min_speedup >= 1.0):
        raise InvalidInputError(f"min_speedup must be a finite number >= 1, got {min_speedup!r}")
    x = _as_images(images)
    if len(x) < max(bs):
        raise InvalidInputError(f"{len(x)} images cannot fill a batch of {max(bs)}; pass at least {max(bs)}")
    y: np.ndarray | None = None
    if labels is not None:
        if hasattr(labels, "detach"):
            labels = labels.detach().cpu().numpy()
        y = np.asarray(labels)
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise InvalidInputError(f"labels must be ({len(x)},) integer class ids, got {y.dtype} {y.shape}")

    # load every candidate first: a bad file or a mismatched input fails before any timing
    outputs: dict[str, np.ndarray] = {}
    for nm, p in named.items():
        sess = onnx_session(p, threads=threads)
        inp = _check_model(nm, p, sess, x, bs)
        outputs[nm] = _outputs(sess, inp, x)
        del sess
    classes = outputs[base].shape[1]
    for nm, o in outputs.items():
        if o.shape != outputs[base].shape:
            raise DimensionMismatchError(
                f"candidate {nm!r} outputs {o.shape}, the baseline {outputs[base].shape}"
            )
    if y is not None and (y.min() < 0 or y.max() >= classes):
        raise InvalidInputError(f"labels must be in [0, {classes}), got range [{y.min()}, {y.max()}]")

    load_before = _load()
    times: dict[str, list[dict[str, Any]]] = {nm: [] for nm in named}
    order = list(named)
    xt = x[:_TIMING_IMAGES]
    with tempfile.TemporaryDirectory() as tmp:
        npy = Path(tmp) / "images.npy"
        np.save(npy, xt)
        bar = tqdm(total=rounds * len(order), desc="timing candidates", disable=not progress)
        for r in range(rounds):
            for nm in order if r % 2 == 0 else order[::-1]:
                if isolate:
                    got = _time_in_subprocess(str(named[nm]), threads, calls, bs, npy, nm)
                else:
                    got = _time_model(str(named[nm]), threads, calls, bs, xt)
                times[nm].append(got)
                bar.update(1)
        bar.close()
    load_after = _load()

    def med(nm: str, key: str, b: int) -> float:
        return float(np.median([t[key][str(b)] for t in times[nm]]))

    base_top = outputs[base].argmax(1)
    base_acc = float((base_top == y).mean()) if y is not None else None
    rows: list[dict[str, Any]] = []
    for nm in named:
        top = outputs[nm].argmax(1)
        acc = float((top == y).mean()) if y is not None else None
        rows.append(
            {
                "name": nm,
                "speedup": med(base, "p50_ms", 1) / med(nm, "p50_ms", 1),
                "agreement": float((top == base_top).mean()),
                "accuracy": acc,
                "accuracy_drop": None if acc is None or base_acc is None else 100.0 * (base_acc - acc),
            }
        )
    chosen, verdicts = _decide(
        rows,
        base,
        labelled=y is not None,
        max_accuracy_drop=float(max_accuracy_drop),
        min_agreement=float(min_agreement),
        min_speedup=float(min_speedup),
    )
    cands = [
        OnnxCandidate(
            name=r["name"],
            path=str(named[r["name"]]),
            file_bytes=named[r["name"]].stat().st_size,
            p50_ms={b: med(r["name"], "p50_ms", b) for b in bs},
            p99_ms={b: med(r["name"], "p99_ms", b) for b in bs},
            speedup=float(r["speedup"]),
            agreement=r["agreement"],
            max_abs_diff=float(np.abs(outputs[r["name"]] - outputs[base]).max()),
            accuracy=r["accuracy"],
            accuracy_drop=r["accuracy_drop"],
            eligible=e,
            reason=w,
        )
        for r, (e, w) in zip(rows, verdicts, strict=True)
    ]
    return DeploymentChoice(
        chosen=chosen,
        baseline=base,
        candidates=cands,
        threads=threads,
        calls=calls,
        rounds=rounds,
        isolate=isolate,
        max_accuracy_drop=float(max_accuracy_drop),
        min_agreement=float(min_agreement),
        min_speedup=float(min_speedup),
        load_average=[*load_before, *load_after],
    )


def _main(argv: list[str]) -> None:
    path, threads, calls, batches, npy = argv
    x = np.load(npy)
    got = _time_model(path, int(threads), int(calls), [int(b) for b in batches.split(",")], x)
    print(json.dumps(got), flush=True)
