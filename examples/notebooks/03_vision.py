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
# and by merging, the file-to-label pipeline with its per-stage latency table, and ONNX export
# with a parity check. On the Fashion-MNIST test set (Xiao et al., 2017) when the shared data set
# is present, on generated images otherwise; the first output says which.
#
# **Not built yet:** knowledge distillation into a small student and INT8 quantization (the
# `distil, quantize` steps of the design) are not part of `mlsys.vision` at the time of writing,
# so this notebook does not show them.

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
