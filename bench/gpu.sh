#!/usr/bin/env bash
# Every GPU benchmark in one run (inside 10 minutes on an H100/H200), for a session that
# has a GPU machine. Appends to bench/RESULTS.md and copies it to $OUT (when set) after
# every stage, so a run cut short still returns what it measured. Stages, in order:
#   tests    the NumPy/CuPy agreement tests (every CuPy path, the fused product kernel among them);
#   startup  the start-up of one NumPy and one CuPy process (what grouping jobs saves);
#   fig2     the default experiment (fig2 of config.yaml as shipped, validation included),
#            cold, under the README's command, stage by stage: first with CuPy's kernel cache
#            empty (a fresh machine), then again with it filled; each run's logs and
#            per-job benchmark files come back as a tarball in $OUT;
#   products one matrix-free product: plain tiles, the tile-reading fused kernel, and the
#            kernel with the inner products inside (FUSED_INNER_PRODUCTS), at 32768 and 131072;
#   inner    the widest (131072, matrix-free, five teachers) end to end by the kernel with the
#            inner products inside, against its arithmetic floor (the 2x target);
#   sizes    solver stages on CuPy at M_ST = 16384 ... 131072 (matrix-free at the top, with
#            its arithmetic floor), dense eigh up to 32768 as the reference, Lanczos-vs-eigh
#            agreement, and sampled-data training vs the exact path for one teacher;
#   samples  the student on finite samples against the population curves (16384, n to 32768);
#   whole    the whole default config (wide_student included), cold.
# GPU_SH_STAGES (default: all of them) picks stages; GPU_SH_SECONDS (default 560) is the
# whole run's budget: each stage gets its own cap or what is left, whichever is less.
# Snakemake must be importable: on the lent machine (no network) from the wheels that
# bench/device_wheels.sh puts in .whl/ here; carry .whl and run there
#   pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && PYTHONPATH=/tmp/site bash bench/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # rfw2s from this checkout, installed or not
python3 -c "import cupy; print('GPU:', cupy.cuda.runtime.getDeviceProperties(0)['name'].decode())"

save() { if [ -n "${OUT:-}" ]; then cp bench/RESULTS.md "$OUT/"; fi; }
BUDGET=${GPU_SH_SECONDS:-560}
STAGES=" ${GPU_SH_STAGES:-tests startup fig2 products inner sizes samples whole} "
stage() { [[ "$STAGES" == *" $1 "* ]]; }
cap() {  # cap SECONDS: the stage's limit, or what is left of the budget
  local left=$((BUDGET - SECONDS))
  echo $((left < $1 ? (left > 1 ? left : 1) : $1))
}

# The workflow tests (the DAG on CuPy among them) need minutes: the fig2 stage runs the DAG.
if stage tests; then
  timeout "$(cap 90)" python3 -m pytest -q -p no:cacheprovider -m "not workflow" -k cupy tests 2>&1 | tee /tmp/gpu_tests.log || true
  echo -e "\nNumPy/CuPy agreement tests (\`pytest -m 'not workflow' -k cupy\`, $(date -u '+%F %H:%M') UTC): $(tail -1 /tmp/gpu_tests.log)" \
      | tee -a bench/RESULTS.md
  save
fi

cold_run() {  # cold_run NAME CONFIG SECONDS [TARBALL]: a fresh results folder, the README's command, timed
  local work start end
  work=$(mktemp -d)
  start=$(date +%s.%N)
  local limit
  limit=$(cap "$3")
  if ! timeout "$limit" python3 -m snakemake -s "$PWD/Snakefile" --directory "$work" --configfile "$2" \
      --cores 1 --resources gpu=1 --quiet; then
    echo "(stopped after $limit s or failed: partial)" | tee -a bench/RESULTS.md
    # The first failed job's log says why.
    grep -rl --include='*.log' -e Traceback -e Error "$work/results" 2>/dev/null | head -2 | xargs -r tail -n 25 || true
  fi
  end=$(date +%s.%N)
  {
    echo
    echo "Cold \`snakemake --cores 1 --resources gpu=1\`, $1 (backend as configured): $(python3 -c "print(round($end - $start, 1))") s wall."
    echo
    echo '```'
    python3 bench/stage_times.py "$work/results" || echo "(no finished job)"
    echo '```'
  } | tee -a bench/RESULTS.md
  if [ -n "${4:-}" ] && [ -n "${OUT:-}" ]; then  # every job's log (step timings) and benchmark file
    tar -czf "$OUT/$4" -C "$work" --exclude='*.npy' --exclude='*.npz' --exclude='*.parquet' --exclude='*.pdf' \
        --exclude='*.png' results || true
  fi
  save
}

# Start-up a GPU job pays before any work (interpreter, CuPy import, CUDA context, one
# launch and one cuBLAS product), against a NumPy job's: what grouping jobs would save.
if stage startup; then
(set -o pipefail; python3 - <<'PY' | tee -a bench/RESULTS.md
import subprocess, sys, time

def wall(code):
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return round(time.perf_counter() - start, 2)

numpy_job = [wall("import numpy") for _ in range(3)]
cupy_job = [wall("import cupy; cupy.zeros(1).sum().item(); (cupy.ones((64, 64)) @ cupy.ones((64, 64))).sum().item()")
            for _ in range(3)]
print(f"\nProcess start-up, 3 tries each: NumPy job {numpy_job} s, CuPy job {cupy_job} s.")
PY
) || echo "(start-up timing failed)"
save
fi

configs=$(mktemp -d)
python3 - "$configs" <<'PY'
import sys, yaml
config = yaml.safe_load(open("config.yaml"))  # as shipped: backend auto (CuPy here)
yaml.safe_dump(config, open(f"{sys.argv[1]}/default.yaml", "w"))
config["experiments"] = {"fig2": config["experiments"]["fig2"]}
yaml.safe_dump(config, open(f"{sys.argv[1]}/fig2.yaml", "w"))
PY
if stage fig2; then
  # Cold as on a fresh machine: CuPy's kernel cache (which the tests above filled) starts
  # empty, so the first job that uses a kernel pays its NVRTC compilation.
  CUPY_CACHE_DIR=$(mktemp -d) cold_run "fig2 of config.yaml (the default experiment), CuPy's kernel cache empty" \
      "$configs/fig2.yaml" 90 fig2_cold.tar.gz
  # Cold results again, CuPy's kernel cache now filled: a user's second and later experiments.
  cold_run "fig2 of config.yaml, CuPy's kernel cache filled by the run above" "$configs/fig2.yaml" 60 fig2_warm.tar.gz
fi
if stage products; then
  timeout "$(cap 60)" python3 bench/benchmark.py --backend cupy --sizes --products 32768 131072 \
      || echo "(product benchmark stopped or failed)"
  save
fi
if stage inner; then  # the widest student end to end, the inner products inside the kernel
  timeout "$(cap 60)" python3 bench/benchmark.py --backend cupy --sizes 131072 --matrix-free-max 131072 \
      --fused-inner --peak-tflops 67 34 --peak-bandwidth 4.8 || echo "(benchmark stopped or failed)"
  save
fi
if stage sizes; then
  timeout "$(cap 200)" python3 bench/benchmark.py --backend cupy --sizes 16384 32768 65536 131072 --eigh-max 32768 \
      --matrix-free-max 131072 --peak-tflops 67 34 --peak-bandwidth 4.8 --sampled 4096 \
      || echo "(benchmark stopped or failed)"
  save
fi
if stage samples; then
  timeout "$(cap 60)" python3 bench/samples.py --backend cupy --sizes 4096 16384 --n 8192 32768 \
      || echo "(samples benchmark stopped or failed)"
  save
fi
if stage whole; then
  cold_run "the whole config.yaml" "$configs/default.yaml" 120 whole_cold.tar.gz
fi
