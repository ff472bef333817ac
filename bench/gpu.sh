#!/usr/bin/env bash
# Every GPU benchmark in one run (well inside 10 minutes on an H100/H200), for a session
# that has a GPU machine. Appends to bench/RESULTS.md and copies it to $OUT when set.
#   1. solver stages on CuPy at M_ST = 16384 ... 131072 (matrix-free at the top),
#      dense eigh up to 32768 as the reference, Lanczos-vs-eigh agreement;
#   2. sampled-data training vs the exact path for one teacher;
#   3. the default experiment, cold, under the README's command, stage by stage.
# Snakemake must be importable (on the lent machine: wheels in .whl, see the device notes).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
python3 -c "import cupy; print('GPU:', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"
python3 bench/benchmark.py --backend cupy --sizes 16384 32768 65536 131072 --eigh-max 32768 \
    --matrix-free-max 131072 --sampled 4096
work=$(mktemp -d)
cat > "$work/fig2.yaml" <<YAML
backend: cupy
experiments:
  fig2: {model: relu_sphere, d: 32, m_st: 16384, m_te: [16, 32, 64, 128, 256], replicates: 3, seed: 0,
         t: {min: 1.0e2, max: 1.0e8, num: 200}}
YAML
start=$(date +%s.%N)
python3 -m snakemake -s "$PWD/Snakefile" --directory "$work" --configfile "$work/fig2.yaml" \
    --cores 1 --resources gpu=1 --quiet
end=$(date +%s.%N)
{
  echo
  echo "Cold \`snakemake --cores 1 --resources gpu=1\`, fig2 only, CuPy: $(echo "$end - $start" | bc) s wall."
  echo
  echo '```'
  python3 bench/stage_times.py "$work/results/fig2"
  echo '```'
} | tee -a bench/RESULTS.md
[ -n "${OUT:-}" ] && cp bench/RESULTS.md "$OUT/" || true
