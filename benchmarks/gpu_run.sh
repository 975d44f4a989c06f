#!/usr/bin/env bash
# The device command of issue 21 (at most 45 + 270 + 45 s = 6 min): GPU tests, gpu_bench.py, then the
# torch.compile section, every result under $OUT (JSON + logs). Needs .device_carry/ (built by
# benchmarks/gpu_prepare_carry.sh) for the data; a missing piece skips its section with the reason.
#
#   bash benchmarks/gpu_run.sh               # on the GPU machine (~5-6 min in all)
#   OUT=/tmp/x bash benchmarks/gpu_run.sh --cpu-check   # here: the same steps, small sizes, on the CPU
#
# No step can stop the others: each runs under `timeout` and its exit code is logged.
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH=packages/common/src:packages/recsys/src:packages/rag/src:packages/vision/src:benchmarks
export MLSYS_DATA=$PWD/.device_carry/data MLSYS_MINILM=$PWD/.device_carry/minilm-fp16
export MLSYS_CACHE_DIR=$OUT/cache HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
SMALL=()
T_TEST=45 T_BENCH=270 T_COMPILE=45 BUDGET=200
if [ "${1:-}" = "--cpu-check" ]; then
  SMALL=(--small --device cpu)
  T_TEST=300 T_BENCH=900 T_COMPILE=300 BUDGET=850
fi
step() {  # step NAME TIMEOUT CMD...: run, log, record the exit code, never stop the script
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  echo "== $name (limit ${limit}s)" | tee -a "$OUT/gpu_run.log"
  timeout -k 10 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s" | tee -a "$OUT/gpu_run.log"
  tail -n 5 "$OUT/$name.log"
}
{ date -u; nvidia-smi 2>&1 | head -20; "$PY" -c "import torch; print(torch.__version__, torch.cuda.is_available())"; du -sh .device_carry 2>&1; } > "$OUT/env.txt" 2>&1
step pytest_gpu "$T_TEST" "$PY" -m pytest tests/vision/test_gpu.py -m "not slow" -q -p no:cacheprovider -rs
step gpu_bench "$T_BENCH" "$PY" benchmarks/gpu_bench.py --out "$OUT" --budget-s "$BUDGET" "${SMALL[@]}"
step gpu_compile "$T_COMPILE" "$PY" benchmarks/gpu_bench.py --out "$OUT" --json-name gpu_bench_compile.json --sections env,compile "${SMALL[@]}"
echo "results: $OUT/gpu_bench.json $OUT/gpu_bench_compile.json; logs: $OUT/*.log" | tee -a "$OUT/gpu_run.log"
