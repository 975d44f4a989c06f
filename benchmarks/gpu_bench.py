"""mlsys on a GPU (issue 21): one command for every GPU figure, with CPU proxies and a CPU smoke mode.

Run on a CUDA machine (``bash benchmarks/gpu_run.sh`` sets the paths and also runs the GPU tests)::

    PYTHONPATH=packages/common/src:packages/recsys/src:packages/rag/src:packages/vision/src \\
        MLSYS_DATA=.device_carry/data python benchmarks/gpu_bench.py --out "$OUT"

or on a CPU with reduced sizes (what CI and ``tests/vision/test_gpu_bench.py`` run)::

    python benchmarks/gpu_bench.py --small --out /tmp/gpu_bench

Sections (each in its own try/except: a failure is recorded in the JSON and the next one runs;
the JSON is rewritten after every section, so a run cut short keeps what it measured):

* ``env``: torch, CUDA, device name, CPU count, load average.
* ``correctness``: GPU vs CPU fp32 logits (TF32 off) of plain/pruned/merged ViT-B/16 (random weights).
* ``sync``: the forward of plain/pruned (top-k)/merged under ``torch.cuda.set_sync_debug_mode("error")``
  (fp32 and bf16); on a CPU, the ``torch.export`` graph is searched for data-dependent-shape ops.
* ``throughput``: plain / pruned keep 0.7 / merged r=8 / r=16 ViT-B/16 at 224, batches 1, 64, 256, in
  fp32 (TF32 matmuls) and bf16 autocast; eager and replayed as a CUDA graph; median of >= 20
  CUDA-event-timed forwards after warm-up, variants interleaved within each repeat; img/s and
  ratios over plain in the same run.
* ``latency``: batch-1 p50/p99 (ms, host clock around forward + synchronize) eager vs CUDA graph.
* ``launches``: kernel launches per forward (``cudaLaunchKernel`` calls and device kernels from
  ``torch.profiler``) for plain/pruned/merged, and two CPU proxies (:func:`count_ops`): every ATen
  event (``aten_ops``) and the kernel-launching ops (``kernel_ops``: no views, no nested duplicates).
* ``pipeline``: ``InferencePipeline(device=..., precision="bf16")`` batch-1 predict (CUDA graphs)
  vs the same without graphs: model stage and end-to-end p50/p99.
* ``fmnist``: trains the Fashion-MNIST teacher with ``Trainer(device=...)`` (bf16 autocast on a GPU),
  fine-tunes a pruned student for one epoch (``PruningLoss`` moved with the trainer), then bf16 vs
  fp32 top-1 agreement on the test set for teacher / pruned / merged r=8 / r=16, accuracies,
  GPU vs CPU logits of the trained teacher, and ONNX export of the GPU model (from a CPU copy).
* ``two_tower``: MovieLens-100K warm split, ``TwoTowerConfig(device=...)`` training examples/s and
  NDCG@10 on the CPU (seed 0) and on the GPU (seeds 0, 1, 2).
* ``minilm``: MiniLM chunks/s (SciFact abstracts) on the CPU vs the GPU (fp32 and fp16 weights)
  and the embedding difference.
* ``compile`` (only when asked, ``--sections compile``; gpu_run.sh runs it last under a timeout):
  ``torch.compile(fullgraph=True)`` compile time and bf16 batch-256 throughput.

Data (read through ``MLSYS_DATA``, see ``benchmarks/gpu_prepare_carry.sh``): ``fashion-mnist``
(a training subset is enough), ``movielens-100k``, ``scifact/corpus.jsonl``; MiniLM from
``--minilm PATH`` (default ``$MLSYS_MINILM``, else the installed package). A missing data set skips
its section with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ALL_SECTIONS = (
    "env",
    "correctness",
    "sync",
    "throughput",
    "latency",
    "launches",
    "pipeline",
    "fmnist",
    "minilm",
    "two_tower",
)


def log(msg: str) -> None:
    print(msg, flush=True)


class Bench:
    """Holds the settings, the results and the JSON file they are written to."""

    def __init__(self, args: argparse.Namespace) -> None:
        from mlsys.common.devices import resolve_device

        self.args = args
        self.small: bool = args.small
        self.dev = resolve_device(args.device)
        self.cuda = self.dev.type == "cuda"
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.json_path = self.out / args.json_name
        self.results: dict[str, Any] = {"sections": {}, "errors": {}, "skipped": {}}
        self.t0 = time.perf_counter()

    def save(self) -> None:
        self.results["elapsed_s"] = round(time.perf_counter() - self.t0, 1)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=2, default=str))
        tmp.replace(self.json_path)

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        elapsed = time.perf_counter() - self.t0
        if elapsed > self.args.budget_s:
            self.results["skipped"][name] = f"time budget {self.args.budget_s} s spent ({elapsed:.0f} s)"
            log(f"== {name}: skipped ({self.results['skipped'][name]})")
            self.save()
            return
        log(f"== {name} (t={elapsed:.0f} s)")
        t = time.perf_counter()
        try:
            res = fn()
            res["section_seconds"] = round(time.perf_counter() - t, 1)
            self.results["sections"][name] = res
        except Exception as exc:  # record and go on: one failing section must not cost the others
            self.results["errors"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}"
            log(f"!! {name} failed: {type(exc).__name__}: {exc}")
        finally:
            if self.cuda:
                with contextlib.suppress(Exception):
                    torch.cuda.set_sync_debug_mode(0)
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
        log(f"   {name} took {time.perf_counter() - t:.1f} s")
        self.save()

    # -- helpers ---------------------------------------------------------------------------
    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.dev)

    def autocast(self, precision: str) -> contextlib.AbstractContextManager[Any]:
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(self.dev.type, dtype=dtype, cache_enabled=False)


# -- models ------------------------------------------------------------------------------------
def vit_config(small: bool) -> Any:
    from mlsys.vision import ViTConfig

    if small:
        return ViTConfig(
            img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=32, depth=4, num_heads=2
        )
    return ViTConfig(
        img_size=224, patch_size=16, in_chans=3, num_classes=1000, embed_dim=768, depth=12, num_heads=12
    )


def variants(small: bool, device: torch.device, *, merged: tuple[int, ...] = (8, 16)) -> dict[str, nn.Module]:
    """plain / pruned keep 0.7 (top-k, blocks 3/6/9 of 12) / merged r=... on ``device`` (seed 0)."""
    from mlsys.vision import DynamicTokenPruning, TokenMerging, ViT

    torch.manual_seed(0)
    vit = ViT(vit_config(small)).eval().to(device)
    out: dict[str, nn.Module] = {
        "plain": vit,
        "pruned_keep0.7": DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval().to(device),
    }
    for r in merged:
        out[f"merged_r{r}"] = TokenMerging(vit, r).eval()
    return out


def images(b: Bench, batch: int, seed: int = 0) -> torch.Tensor:
    cfg = vit_config(b.small)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, generator=g).to(b.dev)


class Graphed:
    """A forward captured as a CUDA graph on a static input (the recipe of InferencePipeline)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, ac: Callable[[], Any]) -> None:
        self.static_in = x.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode(), ac():
            for _ in range(2):
                model(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph), ac():
            self.static_out = model(self.static_in)

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.static_out


def time_interleaved(
    b: Bench, fns: dict[str, Callable[[], Any]], warmup: int, reps: int
) -> dict[str, list[float]]:
    """Milliseconds per call of each fn, interleaved per repeat (CUDA events on a GPU)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    b.sync()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, fn in fns.items():
            if b.cuda:
                s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                s.record()
                fn()
                e.record()
                e.synchronize()
                times[k].append(s.elapsed_time(e))
            else:
                t = time.perf_counter()
                fn()
                times[k].append(1e3 * (time.perf_counter() - t))
    return times


# -- sections ----------------------------------------------------------------------------------
def sec_env(b: Bench) -> dict[str, Any]:
    res: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "device": str(b.dev),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "small": b.small,
        "python": sys.version.split()[0],
    }
    if b.cuda:
        p = torch.cuda.get_device_properties(b.dev)
        res.update(
            gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}"
        )
    log(json.dumps(res))
    return res


@contextlib.contextmanager
def no_tf32() -> Iterator[None]:
    m, c = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = m, c


def sec_correctness(b: Bench) -> dict[str, Any]:
    cpu = torch.device("cpu")
    ref_models = variants(b.small, cpu)
    x = images(b, 2 if b.small else 8).cpu()
    res: dict[str, Any] = {}
    if not b.cuda:
        return {"note": "no GPU: GPU-vs-CPU logits not measured"}
    with torch.inference_mode(), no_tf32():
        refs = {
            k: m(x) for k, m in ref_models.items()
        }  # all on the CPU first (merged shares plain's backbone)
        for m in ref_models.values():
            m.to(b.dev)
        for k, m in ref_models.items():
            ref = refs[k]
            got = m(x.to(b.dev)).cpu()
            res[k] = {
                "max_abs_diff_fp32": float((got - ref).abs().max()),
                "logit_scale": float(ref.abs().max()),
            }
            log(f"{k}: GPU vs CPU fp32 max |diff| {res[k]['max_abs_diff_fp32']:.2e}")
    res["goal_1e-4_met"] = all(v["max_abs_diff_fp32"] <= 1e-4 for v in res.values() if isinstance(v, dict))
    return res


DATA_DEPENDENT_OPS = ("nonzero", "masked_select", "_local_scalar_dense", "item", "unique", "masked_scatter")


def data_dependent_ops(model: nn.Module, x: torch.Tensor) -> list[str]:
    """ATen ops of the exported forward that make output shapes depend on data (or read a scalar)."""
    ep = torch.export.export(model, (x,))  # static input shapes: a symbolic size means data-dependent
    found = []
    for n in ep.graph.nodes:
        if n.op != "call_function":
            continue
        name = str(n.target)
        val = n.meta.get("val")
        if isinstance(val, torch.Tensor) and any(not isinstance(d, int) for d in val.shape):
            found.append(f"dynamic:{name}")
        elif any(f"aten.{op}." in name or name.endswith(f"aten.{op}") for op in DATA_DEPENDENT_OPS):
            found.append(name)
    return found


def sec_sync(b: Bench) -> dict[str, Any]:
    models = variants(b.small, b.dev)
    x = images(b, 2)
    res: dict[str, Any] = {}
    for k, m in models.items():
        if b.cuda:
            row = {}
            for prec in ("fp32", "bf16"):
                try:
                    with torch.inference_mode(), b.autocast(prec):
                        m(x)  # warm-up (lazy init may synchronise once)
                        torch.cuda.synchronize()
                        torch.cuda.set_sync_debug_mode("error")
                        try:
                            m(x)
                        finally:
                            torch.cuda.set_sync_debug_mode(0)
                    row[prec] = "no synchronisation"
                except RuntimeError as exc:
                    row[prec] = f"SYNC: {exc}"
            res[k] = row
        else:
            ops = data_dependent_ops(m, x.cpu())
            res[k] = {"export_data_dependent_ops": ops}
        log(f"{k}: {res[k]}")
    return res


def sec_throughput(b: Bench) -> dict[str, Any]:
    batches = (1, 4) if b.small else (1, 64, 256)
    reps, warm = (3, 1) if b.small else (20, 5)
    models = variants(b.small, b.dev)
    res: dict[str, Any] = {"batches": batches, "repeats": reps, "warmup": warm, "rows": []}
    prev = torch.backends.cuda.matmul.allow_tf32
    for prec in ("fp32", "bf16"):
        torch.backends.cuda.matmul.allow_tf32 = prec == "fp32"  # "fp32 (TF32)" as in the table
        for batch in batches:
            x = images(b, batch)
            modes = ("eager", "graph") if b.cuda else ("eager",)
            for mode in modes:
                fns: dict[str, Callable[[], Any]] = {}
                for k, m in models.items():
                    if mode == "graph":
                        fns[k] = Graphed(m, x, lambda prec=prec: b.autocast(prec))
                    else:
                        fns[k] = lambda m=m, x=x: m(x)
                with torch.inference_mode(), b.autocast(prec):
                    t = time_interleaved(b, fns, warm, reps)
                base = float(np.median(t["plain"]))
                row: dict[str, Any] = {"precision": prec, "batch": batch, "mode": mode}
                for k in models:
                    med = float(np.median(t[k]))
                    row[k] = {"ms": med, "img_s": 1e3 * batch / med, "x_plain": base / med}
                res["rows"].append(row)
                log(
                    f"{prec:5} b={batch:<4} {mode:5} "
                    + "  ".join(f"{k} {row[k]['img_s']:.0f} img/s ({row[k]['x_plain']:.2f}x)" for k in models)
                )
                del fns
                if b.cuda:
                    torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = prev
    return res


def sec_latency(b: Bench) -> dict[str, Any]:
    n, warm = (10, 2) if b.small else (200, 20)
    models = variants(b.small, b.dev)
    x = images(b, 1)
    res: dict[str, Any] = {"forwards": n}
    for prec in ("fp32", "bf16"):
        for k, m in models.items():
            modes: dict[str, Callable[[], Any]] = {"eager": lambda m=m: m(x)}
            if b.cuda:
                modes["graph"] = Graphed(m, x, lambda prec=prec: b.autocast(prec))
            for mode, fn in modes.items():
                ts = []
                with torch.inference_mode(), b.autocast(prec):
                    for i in range(warm + n):
                        b.sync()
                        t = time.perf_counter()
                        fn()
                        b.sync()
                        if i >= warm:
                            ts.append(1e3 * (time.perf_counter() - t))
                key = f"{prec}.{k}.{mode}"
                res[key] = {"p50_ms": float(np.percentile(ts, 50)), "p99_ms": float(np.percentile(ts, 99))}
                log(f"batch 1 {key}: p50 {res[key]['p50_ms']:.3f} ms p99 {res[key]['p99_ms']:.3f} ms")
    return res


LAUNCH_NAMES = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")

# ATen ops that launch no kernel on a GPU: views and metadata changes, no-ops (``to``, ``contiguous``,
# eval-mode ``dropout`` and ``resolve_conj`` return their input; when one of them does copy, the copy
# shows up as a child ``_to_copy``/``clone``/``copy_`` event and is counted there) and allocations
# (the caching allocator, no kernel).
NO_KERNEL_OPS = frozenset(
    "aten::" + n
    for n in (
        # views and metadata
        "view", "_unsafe_view", "_reshape_alias", "reshape", "view_as", "flatten", "unflatten",
        "slice", "select", "narrow", "expand", "expand_as", "transpose", "t", "permute", "movedim",
        "swapaxes", "unsqueeze", "squeeze", "unsqueeze_", "squeeze_", "as_strided", "as_strided_",
        "detach", "detach_", "alias", "lift_fresh", "diagonal", "split", "split_with_sizes", "chunk",
        "unbind", "mT", "numpy_T", "real", "view_as_real", "view_as_complex", "resolve_conj",
        "resolve_neg", "_conj", "_neg_view",
        # no-ops unless a child event does the work
        "to", "contiguous", "type_as", "dropout", "feature_dropout", "alpha_dropout",
        # allocation
        "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "resize_", "set_",
    )
)  # fmt: skip


def count_ops(events: Any) -> dict[str, int]:
    """Two counts of the ATen ops in ``torch.profiler`` events (``prof.events()``).

    * ``aten_ops``: every ``aten::`` event, nested ones included (a ``linear`` and the ``addmm``
      and ``view`` it calls are three).
    * ``kernel_ops``: the kernel-launching ops, the CPU proxy for GPU kernel launches: the leaves
      of the ``aten::`` call tree once the ops of :data:`NO_KERNEL_OPS` (views, metadata, no-ops,
      allocations) are set aside. An op counts when it is not one of those and none of its
      ``aten::`` descendants counts, so a composite op (``linear`` -> ``addmm``, ``layer_norm`` ->
      ``native_layer_norm``, ``argsort`` -> ``sort``) counts once, as the op that does the work.
      Literal leaves would not do: on the CPU ``addmm`` calls ``resolve_conj`` and
      ``native_layer_norm`` calls ``empty``, which would drop every linear layer and norm. An op
      that copies its input and then works in place (out-of-place ``scatter_add``, ``sort``) counts
      as its children only, so this proxy can undercount such an op by one.

    Example:
        >>> import torch
        >>> from torch.profiler import profile
        >>> m = torch.nn.Linear(4, 3)
        >>> x = torch.randn(2, 4)
        >>> with torch.inference_mode(), profile() as prof:
        ...     _ = m(x).view(3, 2).relu()
        >>> count_ops(prof.events())["kernel_ops"]  # addmm (its bias copy on the CPU) and relu
        2
    """
    events = list(events)

    def launches(e: Any) -> int:  # kernel-launching ops in the subtree of event e
        below = sum(launches(c) for c in e.cpu_children)
        is_op = e.name.startswith("aten::") and e.name not in NO_KERNEL_OPS
        return 1 if is_op and not below else below

    return {
        "aten_ops": sum(1 for e in events if e.name.startswith("aten::")),
        "kernel_ops": sum(launches(e) for e in events if e.cpu_parent is None),
    }


def sec_launches(b: Bench) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    # op counts do not depend on the batch: a CPU counts at batch 2 (ViT-B at 64 would take minutes)
    batch = 64 if b.cuda and not b.small else 2
    models = variants(b.small, b.dev)
    x = images(b, batch)
    res: dict[str, Any] = {"batch": batch}
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if b.cuda else [])
    reps = 3
    keys = ("aten_ops", "kernel_ops") + (("kernel_launches",) if b.cuda else ())
    for prec in ("fp32", "bf16"):
        for k, m in models.items():
            with torch.inference_mode(), b.autocast(prec):
                m(x)
                b.sync()
                with profile(activities=acts) as prof:
                    for _ in range(reps):
                        m(x)
                    b.sync()
            evs = prof.events()
            row: dict[str, float] = {n: v / reps for n, v in count_ops(evs).items()}
            row["aten_to_copies"] = sum(1 for e in evs if e.name in ("aten::to", "aten::_to_copy")) / reps
            if b.cuda:
                row["kernel_launches"] = sum(1 for e in evs if e.name in LAUNCH_NAMES) / reps
                row["device_kernels"] = (
                    sum(1 for e in evs if e.device_type == torch.autograd.DeviceType.CUDA) / reps
                )
            res[f"{prec}.{k}"] = row
        for k in models:
            row = res[f"{prec}.{k}"]
            for key in keys:
                row[f"{key}_x_plain"] = row[key] / res[f"{prec}.plain"][key]
            log(f"{prec}.{k}: {row}")
    res["note"] = (
        "aten_ops: every aten:: event, nested ones included; kernel_ops: kernel-launching ops (leaves "
        "of the aten call tree once views, metadata ops, no-ops and allocations are set aside), the "
        "CPU proxy for launches"
        + ("; kernel_launches: cudaLaunchKernel calls" if b.cuda else "; no GPU: no launch measured")
    )
    return res


def sec_pipeline(b: Bench) -> dict[str, Any]:
    from mlsys.common.profiling import LatencyProfiler
    from mlsys.vision import InferencePipeline, PreprocessConfig

    cfg = vit_config(b.small)
    s = cfg.img_size
    pre = PreprocessConfig(resize=s, crop=s)
    n = 20 if b.small else 200
    img = np.random.default_rng(0).integers(0, 256, (s + 32, s + 32, 3), dtype=np.uint8)
    res: dict[str, Any] = {"requests": n}
    models = variants(b.small, b.dev, merged=(16,))
    for k, m in models.items():
        for graphs in (False, True) if b.cuda else (False,):
            prec = "bf16" if b.cuda else "fp32"
            pipe = InferencePipeline(pre, m, device=b.dev, precision=prec, cuda_graphs=graphs, top_k=5)
            pipe.warmup()
            for _ in range(5):
                pipe.predict(img)
            pipe.profiler = pipe.preprocessor.profiler = LatencyProfiler()  # drop the warm-up requests
            for _ in range(n):
                pipe.predict(img)
            st = pipe.stats()
            key = f"{k}.{prec}.{'graphs' if graphs else 'eager'}"
            res[key] = {
                "model_p50_ms": 1e3 * st["model"].p50,
                "model_p99_ms": 1e3 * st["model"].p99,
                "end_to_end_p50_ms": 1e3 * st["end_to_end"].p50,
                "end_to_end_p99_ms": 1e3 * st["end_to_end"].p99,
                "count": st["model"].count,
                "fallbacks": pipe.fallbacks,
            }
            log(f"pipeline {key}: {res[key]}")
    return res


def sec_fmnist(b: Bench) -> dict[str, Any]:
    from mlsys.common.data import find_dataset, load_fashion_mnist
    from mlsys.vision import (
        DynamicTokenPruning,
        PruningLoss,
        RandomCropFlip,
        TokenMerging,
        TrainConfig,
        Trainer,
        ViT,
        ViTConfig,
        check_onnx_parity,
        export_onnx,
        images_to_tensor,
    )

    try:
        root = find_dataset("fashion-mnist")
    except Exception as exc:
        return {"skipped": f"Fashion-MNIST not found: {exc}"}
    xtr, ytr, xte, yte = load_fashion_mnist(root)
    if b.small:
        xtr, ytr, xte, yte = xtr[:512], ytr[:512], xte[:256], yte[:256]
    mean, std = 0.2860, 0.3530
    x_train, x_test = images_to_tensor(xtr, mean, std), images_to_tensor(xte, mean, std)
    y_train, y_test = torch.from_numpy(ytr), torch.from_numpy(yte)
    prec = "bf16" if b.cuda else "fp32"
    epochs = 1 if b.small else b.args.fmnist_epochs
    cfg = ViTConfig.fashion_mnist(depth=2 if b.small else 6)
    torch.manual_seed(0)
    teacher = ViT(cfg)
    tc = TrainConfig(epochs=epochs, batch_size=128, lr=2e-3, patch_dropout=0.5, seed=0, warmup_steps=100)
    t = time.perf_counter()
    hist = Trainer(
        teacher, tc, augment=RandomCropFlip(pad=2), device=b.dev, precision=prec, progress=False
    ).fit(x_train, y_train)
    b.sync()
    res: dict[str, Any] = {
        "train_images": len(y_train),
        "test_images": len(y_test),
        "teacher_epochs": epochs,
        "teacher_train_s": time.perf_counter() - t,
        "teacher_train_images_per_s": len(y_train) * epochs / (time.perf_counter() - t),
        "train_precision": hist.precision,
        "train_device": hist.device,
        "train_fallback": hist.precision_fallback,
    }
    log(f"teacher trained: {res}")
    student = DynamicTokenPruning.from_vit(teacher, keep_ratio=0.7)
    t = time.perf_counter()
    Trainer(
        student,
        TrainConfig(epochs=1, batch_size=128, lr=1e-4, seed=0, warmup_steps=20),
        loss_fn=PruningLoss(teacher),
        lr_scale={"scorers.": 20.0},
        device=b.dev,
        precision=prec,
        progress=False,
    ).fit(x_train, y_train)
    res["student_finetune_s"] = time.perf_counter() - t
    models: dict[str, nn.Module] = {
        "teacher": teacher.eval(),
        "pruned_keep0.7": student.eval(),
        "merged_r8": TokenMerging(teacher, 8).eval(),
        "merged_r16": TokenMerging(teacher, 16).eval(),
    }

    def logits(m: nn.Module, precision: str) -> torch.Tensor:
        outs = []
        with torch.inference_mode(), b.autocast(precision):
            for i in range(0, len(x_test), 1000):
                outs.append(m(x_test[i : i + 1000].to(b.dev)).float().cpu())
        return torch.cat(outs)

    agree: dict[str, Any] = {}
    with no_tf32():
        for k, m in models.items():
            f32 = logits(m, "fp32")
            row = {"accuracy_fp32": float((f32.argmax(1) == y_test).float().mean())}
            if b.cuda:
                bf = logits(m, "bf16")
                row["accuracy_bf16"] = float((bf.argmax(1) == y_test).float().mean())
                row["top1_agreement_bf16_vs_fp32"] = float((bf.argmax(1) == f32.argmax(1)).float().mean())
            agree[k] = row
            log(f"fmnist {k}: {row}")
        res["models"] = agree
        if b.cuda:
            res["goal_99.5pct_met"] = all(r["top1_agreement_bf16_vs_fp32"] >= 0.995 for r in agree.values())
            cpu_t = ViT(cfg)
            cpu_t.load_state_dict({k: v.cpu() for k, v in teacher.state_dict().items()})
            cpu_t.eval()
            with torch.inference_mode():
                ref = cpu_t(x_test[:1000])
            res["trained_teacher_gpu_vs_cpu_max_abs_diff_fp32"] = float(
                (logits(teacher, "fp32")[:1000] - ref).abs().max()
            )
    # ONNX export of the model where it lives (a GPU model is exported from a CPU copy)
    path = export_onnx(teacher, b.out / "fmnist_teacher.onnx")
    with no_tf32():
        res["onnx_parity_max_abs_diff"] = check_onnx_parity(teacher, path, atol=1e-3)
    res["onnx_exported_from_device"] = str(next(teacher.parameters()).device)
    path.unlink()
    return res


def sec_two_tower(b: Bench) -> dict[str, Any]:
    from dataclasses import replace

    from mlsys.common.data import find_dataset
    from mlsys.recsys import (
        TwoTowerModel,
        TwoTowerRetriever,
        load_movielens,
        random_holdout,
        synthetic_dataset,
    )
    from mlsys.recsys._evaluation import evaluate_recommender
    from mlsys.recsys.evaluate import WARM_CONFIG

    if b.small:
        ds, name = synthetic_dataset(n_users=120, n_items=80, per_user=10), "synthetic (small)"
        base = replace(WARM_CONFIG, epochs=1, batch_size=128, dim=16, hidden=32)
    else:
        try:
            ds, name = load_movielens(find_dataset("movielens-100k")), "MovieLens-100K"
        except Exception as exc:
            return {"skipped": f"MovieLens-100K not found: {exc}"}
        base = WARM_CONFIG
    split = random_holdout(ds.interactions, train_fraction=0.8, seed=0)
    res: dict[str, Any] = {"data": name, "train_events": len(split.train), "epochs": base.epochs, "runs": []}
    try:
        replace(base, device="cpu")
    except TypeError as exc:
        return {"skipped": f"TwoTowerConfig has no device field yet: {exc}"}
    runs = [("cpu", 0)]
    if b.cuda:
        runs = [(str(b.dev), 0), ("cpu", 0), (str(b.dev), 1), (str(b.dev), 2)]
    for dev, seed in runs:
        cfg = replace(base, device=dev, seed=seed)  # type: ignore[call-arg]
        model = TwoTowerModel(cfg).fit(split.train, items=ds.items, users=ds.users, progress=False)
        secs = float(model.train_seconds_)
        ev = evaluate_recommender(TwoTowerRetriever(model, ds.items), split, ks=(10,))
        row = {
            "device": dev,
            "seed": seed,
            "train_seconds": secs,
            "examples_per_s": len(split.train) * base.epochs / secs,
            "ndcg@10": float(ev.metrics["ndcg@10"]),
            "torch_threads": torch.get_num_threads(),
        }
        res["runs"].append(row)
        log(f"two-tower {row}")
        b.save()
    cpu = [r for r in res["runs"] if r["device"] == "cpu"]
    gpu = [r for r in res["runs"] if r["device"] != "cpu"]
    if cpu and gpu:
        res["gpu_vs_cpu_examples_per_s"] = (
            float(np.mean([r["examples_per_s"] for r in gpu])) / cpu[0]["examples_per_s"]
        )
        res["gpu_ndcg_mean_sd"] = (
            float(np.mean([r["ndcg@10"] for r in gpu])),
            float(np.std([r["ndcg@10"] for r in gpu])),
        )
    return res


def sec_minilm(b: Bench) -> dict[str, Any]:
    from mlsys.common.data import find_dataset
    from mlsys.rag._embedders import MiniLMEmbedder

    path = b.args.minilm or os.environ.get("MLSYS_MINILM")
    try:
        corpus = find_dataset("scifact") / "corpus.jsonl"
        docs = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
    except Exception as exc:
        return {"skipped": f"SciFact corpus not found: {exc}"}
    texts = [(d.get("title", "") + ". " + d.get("text", "")).strip() for d in docs]
    n_cpu = 16 if b.small else 192
    n_gpu = len(texts) if not b.small else 16
    res: dict[str, Any] = {
        "model_path": path or "installed package",
        "cpu_chunks": n_cpu,
        "gpu_chunks": n_gpu,
    }

    def run(device: str, n: int, half: bool) -> tuple[float, np.ndarray]:
        emb = MiniLMEmbedder(path, device=device, batch_size=64)
        model = emb._load()
        model.to(torch.float16 if half else torch.float32)
        emb.embed_documents(texts[:64], progress=False)  # warm-up (lazy init, kernels)
        b.sync()
        t = time.perf_counter()
        vecs = emb.embed_documents(texts[:n], progress=False)
        b.sync()
        return n / (time.perf_counter() - t), vecs

    cps, cpu_vecs = run("cpu", n_cpu, False)
    res["cpu_fp32_chunks_per_s"] = cps
    res["cpu_threads"] = torch.get_num_threads()
    log(f"minilm cpu fp32: {cps:.1f} chunks/s ({torch.get_num_threads()} threads)")
    if b.cuda:
        for half in (False, True):
            gps, vecs = run(str(b.dev), n_gpu, half)
            key = "gpu_fp16" if half else "gpu_fp32"
            res[f"{key}_chunks_per_s"] = gps
            res[f"{key}_x_cpu"] = gps / cps
            res[f"{key}_max_abs_diff_vs_cpu"] = float(np.abs(vecs[:n_cpu] - cpu_vecs).max())
            log(f"minilm {key}: {gps:.1f} chunks/s ({gps / cps:.1f}x cpu)")
    return res


def sec_compile(b: Bench) -> dict[str, Any]:
    batch = 4 if b.small else 256
    prec = "bf16" if b.cuda else "fp32"
    models = variants(b.small, b.dev, merged=(16,))
    x = images(b, batch)
    res: dict[str, Any] = {"batch": batch, "precision": prec, "fullgraph": True}
    for k, m in models.items():
        torch._dynamo.reset()
        c = torch.compile(m, fullgraph=True)
        t = time.perf_counter()
        with torch.inference_mode(), b.autocast(prec):
            c(x)
            b.sync()
            comp = time.perf_counter() - t
            tm = time_interleaved(
                b, {"eager": lambda m=m: m(x), "compiled": lambda c=c: c(x)}, 3, 3 if b.small else 20
            )
        res[k] = {
            "compile_s": comp,
            "eager_ms": float(np.median(tm["eager"])),
            "compiled_ms": float(np.median(tm["compiled"])),
        }
        log(f"compile {k}: {res[k]}")
        b.save()
    return res


SECTIONS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "env": sec_env,
    "correctness": sec_correctness,
    "sync": sec_sync,
    "throughput": sec_throughput,
    "latency": sec_latency,
    "launches": sec_launches,
    "pipeline": sec_pipeline,
    "fmnist": sec_fmnist,
    "two_tower": sec_two_tower,
    "minilm": sec_minilm,
    "compile": sec_compile,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="reduced sizes (a CPU finishes in seconds)")
    ap.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu_bench_out"), help="folder for the JSON")
    ap.add_argument("--json-name", default="gpu_bench.json")
    ap.add_argument("--sections", default=",".join(ALL_SECTIONS), help=f"comma list of {sorted(SECTIONS)}")
    ap.add_argument("--budget-s", type=float, default=330.0, help="skip the remaining sections after this")
    ap.add_argument("--fmnist-epochs", type=int, default=6)
    ap.add_argument("--minilm", default=None, help="sentence-transformers folder of all-MiniLM-L6-v2")
    args = ap.parse_args(argv)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown sections {unknown}; choose from {sorted(SECTIONS)}")
    b = Bench(args)
    log(f"gpu_bench: device {b.dev}, small={b.small}, sections {wanted}, out {b.json_path}")
    for name in wanted:
        b.run(name, lambda name=name: SECTIONS[name](b))
    log(
        f"done in {time.perf_counter() - b.t0:.0f} s; errors: {sorted(b.results['errors'])}; JSON {b.json_path}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
