#!/usr/bin/env bash
# Build .device_carry/ (git-ignored), the data benchmarks/gpu_run.sh needs on a machine without
# network or shared data: at most 60 MiB, since the device tool carries 64 MiB in all.
#
#   .device_carry/data/fashion-mnist/   first $FMNIST_TRAIN training images (idx, gzip) + the full test set
#   .device_carry/data/movielens-100k/  the u.* files of MovieLens-100K (2.2 MB)
#   .device_carry/data/scifact/         the first $SCIFACT_DOCS documents of corpus.jsonl (MiniLM chunks/s)
#   .device_carry/minilm-fp16/          all-MiniLM-L6-v2 with fp16 weights (45 MB) + tokenizer/config files
#
# Usage (from the repository root):  bash benchmarks/gpu_prepare_carry.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.nox/tests/bin/python}
SRC=${MLSYS_SHARED_DATA:-/work/shared/data}
OUT=.device_carry
FMNIST_TRAIN=${FMNIST_TRAIN:-12000}
SCIFACT_DOCS=${SCIFACT_DOCS:-1000}
rm -rf "$OUT"
mkdir -p "$OUT/data/fashion-mnist" "$OUT/data/movielens-100k" "$OUT/data/scifact"
cp "$SRC"/fashion-mnist/t10k-*-ubyte.gz "$OUT/data/fashion-mnist/"
cp "$SRC"/movielens-100k/u.* "$SRC"/movielens-100k/README "$OUT/data/movielens-100k/"
head -n "$SCIFACT_DOCS" "$SRC/scifact/corpus.jsonl" > "$OUT/data/scifact/corpus.jsonl"
"$PY" - "$SRC" "$OUT" "$FMNIST_TRAIN" <<'PYEOF'
import shutil, sys
from pathlib import Path

from safetensors.torch import load_file, save_file

from mlsys.common.data import read_idx, write_idx

src, out, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
fm = src / "fashion-mnist"
write_idx(read_idx(fm / "train-images-idx3-ubyte.gz")[:n], out / "data/fashion-mnist/train-images-idx3-ubyte.gz", compress=True)
write_idx(read_idx(fm / "train-labels-idx1-ubyte.gz")[:n], out / "data/fashion-mnist/train-labels-idx1-ubyte.gz", compress=True)

from mlsys.rag._embedders import minilm_model_path

mp = minilm_model_path()
dst = out / "minilm-fp16"
for f in mp.rglob("*"):
    rel = f.relative_to(mp)
    if f.is_dir() or rel.name in ("model.safetensors", "README.md", "data_config.json", ".gitattributes"):
        continue
    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(f, dst / rel)
weights = load_file(str(mp / "model.safetensors"))
save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in weights.items()}, str(dst / "model.safetensors"), metadata={"format": "pt"})
print(f"fashion-mnist: {n} train images; minilm: {len(weights)} tensors in fp16")
PYEOF
size=$(du -sb "$OUT" | cut -f1)
echo "carry size: $((size / 1048576)) MiB ($size bytes)"
if [ "$size" -gt $((60 * 1048576)) ]; then echo "carry is over 60 MiB" >&2; exit 1; fi
