# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Image inference with `mlsys.vision`
#
# Preprocessing (PIL or OpenCV), a small ViT trained for under a minute, fewer tokens by pruning
# and by merging, the file-to-label pipeline with its per-stage latency table, ONNX export with a
# parity check, and then the `distil, quantize` steps of the design with `mlsys.vision.compress`:
# the ViT distilled into a MobileNetV3 student, the student exported, checked and quantized to
# INT8, with accuracy, file size and batch-1 latency side by side. On the Fashion-MNIST test set
# (Xiao et al., 2017) when the shared data set is present, on generated images otherwise; the
# first output says which.

# %%
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from mlsys.common.data import FASHION_MNIST_CLASSES, data_root, load_fashion_mnist

torch.set_num_threads(1)  # a shared 2-core machine: stable latencies
torch.manual_seed(0)
MEAN, STD = 0.2860, 0.3530
root = data_root() / "fashion-mnist"
if root.is_dir():
    fmnist = load_fashion_mnist(root)
    x_train, y_train = fmnist.x_train[:8_000], fmnist.y_train[:8_000]
    x_test, y_test = fmnist.x_test[:1_000], fmnist.y_test[:1_000]
    print(f"data: Fashion-MNIST from {root} (8,000 training and 1,000 test images used)")
else:
    rng = np.random.default_rng(0)
    y_train, y_test = rng.integers(0, 10, 8_000), rng.integers(0, 10, 1_000)
    # a learnable generated task: class c is a bright horizontal band at row 2c + 4
    x_train, x_test = (rng.integers(0, 60, (n, 28, 28), dtype=np.uint8) for n in (8_000, 1_000))
    for x, y in ((x_train, y_train), (x_test, y_test)):
        for i, c in enumerate(y):
            x[i, 2 * c + 4 : 2 * c + 7] = 230
    print(f"data: generated 28x28 images (Fashion-MNIST not found at {root})")

# %% [markdown]
# ## Preprocessing: PIL or OpenCV, the same numbers within a stated tolerance
# Decode, resize, centre-crop and normalise, each a profiler stage. The two backends agree within
# `BACKEND_TOLERANCE`; OpenCV is usually faster.

# %%
import io

from PIL import Image

from mlsys.vision import BACKEND_TOLERANCE, PreprocessConfig, Preprocessor

jpeg = io.BytesIO()
Image.fromarray(x_test[0]).resize((112, 112), Image.Resampling.BICUBIC).save(jpeg, "JPEG", quality=90)
outs = {}
for backend in ("pil", "opencv"):
    pre = Preprocessor(
        PreprocessConfig(resize=28, crop=28, mean=(MEAN,), std=(STD,), channels=1, backend=backend)
    )
    outs[backend] = pre(jpeg.getvalue())
pixels = np.abs(outs["pil"] - outs["opencv"]) * STD * 255  # back to 0..255 pixel levels
print(
    f"tensor {outs['pil'].shape}; |PIL - OpenCV| in pixel levels: mean {pixels.mean():.2f}, max {pixels.max():.1f}"
)
print(f"tolerance: {BACKEND_TOLERANCE}")

# %% [markdown]
# ## A small ViT, trained for under a minute
# `ViTConfig.fashion_mnist()` trains to 90.3% in 27 CPU minutes (`benchmarks/vision/README.md`);
# here a 4-block ViT with 4x4 patches gets five short epochs on 8,000 images, enough for the
# comparisons below to mean something.

# %%
from mlsys.vision import TrainConfig, Trainer, ViT, ViTConfig, evaluate, images_to_tensor

x = images_to_tensor(x_train, MEAN, STD)
y = torch.from_numpy(np.asarray(y_train, dtype=np.int64))
xt = images_to_tensor(x_test, MEAN, STD)
yt = torch.from_numpy(np.asarray(y_test, dtype=np.int64))
vit = ViT(
    ViTConfig(img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depth=4, num_heads=4)
)
t0 = time.perf_counter()
history = Trainer(vit, TrainConfig(epochs=5, batch_size=128, lr=2e-3, warmup_steps=20), progress=False).fit(
    x, y
)
vit.eval()
result = evaluate(vit, xt, yt)
print(f"trained in {time.perf_counter() - t0:.0f} s")
result

# %% [markdown]
# ## Fewer tokens: pruning and merging
# `DynamicTokenPruning` drops the least informative patch tokens after chosen blocks
# (DynamicViT-style; its scorer is trained with `PruningLoss` - untrained here, so accuracy drops
# more than it would after fine-tuning). `TokenMerging` merges similar tokens by bipartite
# matching and needs no training at all. Both pay off on long token sequences (ViT-S/16 at 224:
# pruning 1.62x at batch 32 in `benchmarks/vision/README.md`); on this model's 49 tokens the
# merging's matching costs more than the tokens it saves, and the table shows it.

# %%
from mlsys.vision import DynamicTokenPruning, TokenMerging

variants = {
    "plain": vit,
    "pruned (keep 70%, untrained scorer)": DynamicTokenPruning.from_vit(vit, keep_ratio=0.7).eval(),
    "merged (r=8 per block)": TokenMerging(vit, 8).eval(),
}
batch = xt[:256]
print(f"{'model':<38}{'accuracy':>9}{'img/s':>9}{'speed-up':>10}")
speed = {}
with torch.inference_mode():
    for name, model in variants.items():
        model(batch)  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            model(batch)
        speed[name] = 3 * batch.shape[0] / (time.perf_counter() - t0)
        acc = evaluate(model, xt, yt).accuracy
        print(f"{name:<38}{acc:9.3f}{speed[name]:9.0f}{speed[name] / speed['plain']:9.2f}x")

# %% [markdown]
# ## From image files to labels
# `InferencePipeline` takes paths or bytes and returns labels with probabilities; every stage is
# profiled, and the report names the dominant stage and the thread settings.

# %%
import shutil
import tempfile
from pathlib import Path

from mlsys.vision import InferencePipeline

folder = Path(tempfile.mkdtemp(prefix="mlsys-vision-"))
paths = []
for i, img in enumerate(x_test[:64]):
    path = folder / f"{i:03d}.jpg"
    Image.fromarray(img).resize((112, 112), Image.Resampling.BICUBIC).save(path, "JPEG", quality=90)
    paths.append(path)
labels = list(FASHION_MNIST_CLASSES) if root.is_dir() else [f"band {c}" for c in range(10)]
config = PreprocessConfig(resize=28, crop=28, mean=(MEAN,), std=(STD,), channels=1, backend="opencv")
pipe = InferencePipeline(config, vit, labels=labels, top_k=3)
predictions = [pipe.predict(p) for p in paths]
accuracy = np.mean([p.ids[0] == t for p, t in zip(predictions, y_test[:64])])
print(
    f"{len(paths)} JPEG files, top-1 accuracy {accuracy:.3f}; first: {predictions[0].labels} {np.round(predictions[0].probs, 3)}"
)
print(pipe.report())

# %% [markdown]
# ## ONNX export with a parity check
# `export_onnx` writes the model; `check_onnx_parity` runs ONNX Runtime on the same inputs and
# raises `OnnxParityError` when the logits differ beyond the tolerance. The same pipeline then
# serves from the ONNX session.

# %%
from mlsys.vision import check_onnx_parity, export_onnx, onnx_session

onnx_path = export_onnx(vit, folder / "vit.onnx")
session = onnx_session(onnx_path, threads=1)
print(
    f"{onnx_path.name}: {onnx_path.stat().st_size / 1e3:.0f} kB; max |logit diff| vs torch {check_onnx_parity(vit, session):.2e}"
)
onnx_pipe = InferencePipeline(config, session, labels=labels, top_k=3)
agree = np.mean([onnx_pipe.predict(p).ids[0] == q.ids[0] for p, q in zip(paths, predictions)])
print(f"ONNX pipeline agrees with torch on {agree:.1%} of the files")

# %% [markdown]
# ## Distillation: the ViT teaches a small CNN
# `MobileNetV3Config.fashion_mnist()` is the first four blocks of MobileNetV3-small sized for
# 28x28 inputs: 27,274 parameters against the teacher's 116,938. `FeatureDistillation` trains it
# on three signals at once: the labels, the teacher's softened logits (`OutputDistillation`,
# Hinton KD, temperature 4) and the teacher's block features (the student's block outputs, pooled
# and projected by small learnable heads, are matched to the ViT's CLS token after the paired
# blocks). `precompute_teacher` runs the teacher once over the training images, so an epoch costs
# only the student's forward and backward; the `Trainer` tells the loss which rows each batch
# holds. The same student trained on the labels alone, with the same budget (3 epochs, at most
# 25 s), is the comparison that says whether the teacher helped.

# %%
from mlsys.vision.compress import (
    FeatureDistillation,
    MobileNetV3,
    MobileNetV3Config,
    OutputDistillation,
    count_parameters,
    precompute_teacher,
)

t0 = time.perf_counter()
cache = precompute_teacher(vit, x, blocks=(1, 3))  # logits and CLS features after blocks 1 and 3
print(f"teacher outputs cached for {len(cache):,} images in {time.perf_counter() - t0:.1f} s")
budget = TrainConfig(epochs=3, batch_size=128, lr=3e-3, warmup_steps=20, time_limit_s=25)
students, runs = {}, {}
for name in ("student, distilled", "student, labels only"):
    torch.manual_seed(0)
    student = MobileNetV3(MobileNetV3Config.fashion_mnist())
    kd = (
        FeatureDistillation(
            student,
            cache=cache,
            student_taps=(1, 3),  # 24 and 40 channels, 14x14 and 7x7 maps
            teacher_blocks=(1, 3),
            task_loss=OutputDistillation(cache=cache, temperature=4.0, alpha=0.5),
        )
        if name.endswith("distilled")
        else None  # the trainer's plain cross-entropy
    )
    runs[name] = Trainer(student, budget, loss_fn=kd, progress=False).fit(x, y)
    students[name] = student.eval()
student = students["student, distilled"]
print(f"{'model':<24}{'parameters':>11}{'accuracy':>10}{'train s':>9}")
for name, model, run in [("ViT teacher", vit, history), *((n, students[n], runs[n]) for n in students)]:
    acc = evaluate(model, xt, yt).accuracy
    cut = " (time limit)" if run.stopped_early else ""
    print(f"{name:<24}{count_parameters(model):>11,}{acc:10.3f}{run.wall_seconds:9.0f}{cut}")

# %% [markdown]
# On Fashion-MNIST the student is as accurate as its teacher or better, with or without the
# teacher's help: the ViT had under a minute of training (`ViTConfig.fashion_mnist()` reaches
# 90.3% in 27 minutes) and a CNN learns 28x28 images faster than a ViT does, so the teacher's
# soft targets and features carry little that the labels do not, and the two student rows differ
# by less than the noise of 1,000 test images (about 1.3 points either way). Distillation earns
# its keep with a teacher better than what the student reaches alone;
# `benchmarks/vision/distill_fmnist.py` runs that comparison (no KD, output KD, feature KD, three
# seeds) with the fully trained teacher. On generated images every model is perfect.

# %% [markdown]
# ## INT8: export, parity, static quantization, and whether to deploy it
# `export_onnx` writes the distilled student and `onnx_parity` checks ONNX Runtime against torch
# at batch 1 and 32 (a table; it raises `OnnxParityError` beyond `atol` or on any top-1
# disagreement). `quantize_onnx(mode="static")` then writes a QDQ INT8 model: weights per output
# channel, activation ranges calibrated on `CalibrationData`, real training images preprocessed
# like the model's inputs. A quantized model is not faster by construction, so
# `choose_onnx_model` decides on this machine: it times the FP32 student (the baseline, first) and
# each alternative in its own process (interleaved rounds, 1 thread), compares accuracy on the test
# images, and keeps the fastest candidate within 0.5 points that beats the baseline by at least
# 10%, or the baseline. The teacher is one more candidate, to see the two models side by side.

# %%
from IPython.display import display

from mlsys.vision.compress import (
    CalibrationData,
    choose_onnx_model,
    onnx_parity,
    quantize_onnx,
    quantized_layers,
)

fp32_path = export_onnx(student, folder / "student.onnx")
display(onnx_parity(student, fp32_path, xt[:32], batches=(1, 32)))  # a table; raises on a mismatch
calibration = CalibrationData(x[:512], batch_size=64, min_batches=8, input_shape=(1, 28, 28))
int8_path = quantize_onnx(fp32_path, folder / "student_int8.onnx", mode="static", calibration=calibration)
print(
    f"INT8: {len(quantized_layers(int8_path))} weight layers, calibrated on {len(calibration)} batches of 64"
)
choice = choose_onnx_model(
    {"student FP32": fp32_path, "student INT8": int8_path, "ViT teacher FP32": onnx_path},
    xt,
    yt,
    batch_sizes=(1, 32),
    calls=300,
    rounds=3,
    progress=False,
)
print(choice.summary())
display(choice)  # per candidate: speed-up, p50/p99 at batch 1 and 32, accuracy, size, and why

# %% [markdown]
# The student's speed comes from distillation: the teacher's row shows it, a fraction of the
# student's speed at batch 1. INT8 usually does not pay at this size on a CPU: only the weight
# layers are quantized (the hard-swish, squeeze-excite and residual additions between the
# convolutions stay in float), so activations are quantized and dequantized around every
# convolution, and on 28x28 maps with a few dozen channels that costs more than the integer
# arithmetic saves; `choose_onnx_model` then keeps the FP32 file, and its `reason` column says
# why. The file shrinks by about a quarter rather than four times because, at 27k parameters, the
# graph's nodes, scales and zero points are a large part of a 100 kB file. On a larger model, where
# the weight and activation traffic INT8 saves dominates, the same call may choose INT8; the
# accuracy cost here is a fraction of a point. `choice.plot()` draws accuracy against latency.

# %% [markdown]
# ## Mixed precision, simulated first
# `MixedPrecisionPolicy` gives layers bit widths by module-path glob or by type, first match
# wins; `fake_quantize` simulates it in torch (INT8 weights per output channel with calibrated
# UINT8 inputs, INT4 weights in groups of 32), a quick accuracy check before building real
# kernels (`quantize_onnx`, or `quantize_mixed_onnx` for INT4 `MatMulNBits` on a ViT's linear
# layers). Here the blocks run at INT8 and the classifier's weights at INT4; the stem, the first
# layer, stays in float, as it usually does.

# %%
from mlsys.vision.compress import MixedPrecisionPolicy, fake_quantize

policy = MixedPrecisionPolicy((("blocks.*", 8), ("last.*", 8), ("classifier.*", 4)))
bits = policy.resolve(student)
simulated = fake_quantize(student, policy, calibration=x[:512])
print(
    f"{sum(b == 8 for b in bits.values())} layers INT8, {sum(b == 4 for b in bits.values())} INT4: "
    f"accuracy {evaluate(simulated, xt, yt).accuracy:.3f} (float student {evaluate(student, xt, yt).accuracy:.3f})"
)
shutil.rmtree(folder, ignore_errors=True)  # the JPEG files and ONNX models were scratch
