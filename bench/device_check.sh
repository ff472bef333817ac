#!/usr/bin/env bash
# The GPU path verified in one command on a lent GPU machine (Python 3.12, CuPy for CUDA 13,
# NumPy, pandas, pyarrow, matplotlib, pytest; no Snakemake, no network), within 300 s of wall
# time: docs/performance.md, "The device check". Here, once: bash bench/device_wheels.sh
# (Snakemake and jsonschema as wheels in .whl/, git-ignored); then the device tool's
#   run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=330)
# Every stage runs under its own time cap and writes its rows as it goes, to $OUT when it is
# set (else bench/device_check_out/): device_check.log (everything printed), rows.jsonl (every
# measurement, one JSON row each), stages.tsv (a row per finished stage), summary.md (the
# final table), fig2_logs.tar.gz (the fig2 jobs' logs and benchmark files). A stage cut by its
# cap keeps what it printed and wrote.
#   bash bench/device_check.sh --dry-run   the stages and their caps, nothing run (any machine)
#   DEVICE_CHECK_STAGES="kernels products" bash bench/device_check.sh   some stages only
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD

# name|cap in seconds|what it checks. The caps sum to at most CAPS_MAX: with start-up and the
# final table the whole run stays within 300 s.
STAGES=(
  "wheels|12|Snakemake and jsonschema from the carried .whl (pip --no-index --no-deps --target /tmp), nothing else"
  "versions|7|Python, CuPy, CUDA runtime and driver, NumPy, the device's name and memory, nvcc"
  "kernels|40|every CUDA kernel against NumPy at the shipped shapes and the edges (odd sizes, 1 to 120 columns, d to 128), NaN kept; registers, spills, shared memory (driver; nvcc -Xptxas -v for sm_90)"
  "tests|35|the CuPy tests on the device: pytest -m 'not workflow' -k cupy"
  "linalg|15|eigh and the thin SVD, CuPy against NumPy"
  "curves|30|stored, tiled and fused curves agreeing to 1e-10 at M = 32768; CuPy against NumPy at 4096"
  "samples|25|the finite-sample routes (thin SVD, Krylov, Krylov with tiles) against one another, and NumPy"
  "products|20|one product H @ X at M = 131072 three ways (plain tiles, tile-reading kernel, fused), each against its floor"
  "racecheck|12|compute-sanitizer --tool racecheck on tiny launches of the raw kernels"
  "memcheck|12|compute-sanitizer --tool memcheck on tiny launches, the fallbacks included"
  "fig2|62|fig2 of config.yaml cold through the DAG (snakemake --cores 1 --resources gpu=1 fig2), CuPy's kernel cache empty"
)
CAPS_MAX=280
BUDGET=${DEVICE_CHECK_SECONDS:-290}  # the whole run's wall time: a stage gets its cap or what is left
DEVICE_CALL='run(command="bash bench/device_check.sh", carry=[".whl"], timeout_s=330)'

field() { echo "$1" | cut -d'|' -f"$2"; }

if [ "${1:-}" = "--dry-run" ]; then
  total=0
  printf '%-10s %5s  %s\n' stage cap what
  for entry in "${STAGES[@]}"; do
    printf '%-10s %4ss  %s\n' "$(field "$entry" 1)" "$(field "$entry" 2)" "$(field "$entry" 3)"
    total=$((total + $(field "$entry" 2)))
  done
  echo "caps: $total s in all (at most $CAPS_MAX; the run stops at $BUDGET s)"
  if ls .whl/*.whl >/dev/null 2>&1; then
    echo "wheels: $(ls .whl/*.whl | wc -l) in .whl ($(du -sh .whl | cut -f1)): carry .whl"
  else
    echo "wheels: none in .whl yet: bash bench/device_wheels.sh prepares them"
  fi
  echo "device tool: $DEVICE_CALL"
  [ "$total" -le "$CAPS_MAX" ] || { echo "the caps exceed $CAPS_MAX s" >&2; exit 1; }
  exit 0
fi

OUTDIR=${OUT:-$ROOT/bench/device_check_out}
mkdir -p "$OUTDIR"
LOG=$OUTDIR/device_check.log
ROWS=$OUTDIR/rows.jsonl
TABLE=$OUTDIR/stages.tsv
SITE=${DEVICE_CHECK_SITE:-/tmp/rfw2s_device_site}  # the wheels' install target
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT/src:$SITE${PYTHONPATH:+:$PYTHONPATH}"  # rfw2s from this checkout, installed or not
export OUTDIR ROWS SITE PY ROOT

# One stage's body (the main loop below runs it under its cap): `bash device_check.sh --stage NAME`.
# STAGE_CAP is its cap: a body that must write something after its long command gives that
# command a little less. Exit status 3: skipped (a tool missing), said why.
stage_body() {
  inner() { local t=$((STAGE_CAP - $1)); echo $((t > 1 ? t : 1)); }  # the cap less $1 s, at least 1 s
  case "$1" in
    wheels)
      if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "KEY: no wheels in .whl (bash bench/device_wheels.sh here, then carry .whl): tests and fig2 will fail"
        return 3
      fi
      rm -rf "$SITE"
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl || return 1
      echo "KEY: $(ls .whl/*.whl | wc -l) wheels into $SITE: $("$PY" -c 'import snakemake, importlib.metadata as m
print("snakemake", snakemake.__version__, "jsonschema", m.version("jsonschema"))')"
      ;;
    versions | kernels | linalg | curves | samples | products)
      "$PY" bench/device_check.py "$1" --rows "$ROWS"
      ;;
    tests)
      local out=/tmp/rfw2s_device_tests.log
      timeout -k 2 "$(inner 4)" "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors \
        -m "not workflow" -k cupy tests 2>&1 | tee "$out"
      local rc=${PIPESTATUS[0]}
      local progress  # pytest -q's progress characters: what ran before a stop
      progress=$(grep -E '^[.sFExX]+( |$)' "$out" | cut -d' ' -f1 | tr -d '\n')
      echo  # pytest stopped mid-line
      if [ "$rc" = 124 ]; then
        echo "KEY: stopped at its cap after ${#progress} tests: $(echo "$progress" | tr -cd '.' | wc -c) passed," \
          "$(echo "$progress" | tr -cd 'FE' | wc -c) failed or errors, $(echo "$progress" | tr -cd 's' | wc -c) skipped"
      else
        echo "KEY: $(grep -E '(passed|failed|error)' "$out" | tail -1)"
      fi
      return "$rc"
      ;;
    racecheck | memcheck)
      local sanitizer
      sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer \
        /usr/local/cuda*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -1)
      if [ -z "$sanitizer" ]; then
        echo "KEY: no compute-sanitizer on this machine"
        return 3
      fi
      local out=/tmp/rfw2s_device_$1.log fallbacks=0
      [ "$1" = memcheck ] && fallbacks=1  # cuBLAS too; racecheck looks at our shared memory alone
      RFW2S_SANITIZE_FALLBACKS=$fallbacks timeout -k 2 "$(inner 3)" "$sanitizer" --tool "$1" \
        --error-exitcode 9 "$PY" bench/device_check.py sanitize --rows "$ROWS" 2>&1 | tee "$out"
      local rc=${PIPESTATUS[0]}
      echo "KEY: $(grep -h 'SUMMARY' "$out" | tail -1 | sed 's/^=* *//'); $(grep -h '^KEY: ' "$out" | tail -1 | cut -c6-)"
      return "$rc"
      ;;
    fig2)
      local work cache rc
      work=$(mktemp -d)
      cache=$(mktemp -d)  # CuPy's kernel cache empty: every job compiles what it launches, as on a fresh machine
      local start=$SECONDS
      # The target first: after --resources it would be read as a resource.
      CUPY_CACHE_DIR=$cache timeout -k 2 "$(inner 8)" "$PY" -m snakemake fig2 -s "$ROOT/Snakefile" \
        --directory "$work" --configfile "$ROOT/config.yaml" --cores 1 --resources gpu=1
      rc=$?
      local wall=$((SECONDS - start))
      "$PY" bench/stage_times.py "$work/results" || true
      tar -czf "$OUTDIR/fig2_logs.tar.gz" -C "$work" --exclude='*.npy' --exclude='*.npz' --exclude='*.parquet' \
        --exclude='*.pdf' --exclude='*.png' --exclude='conda' --exclude='singularity' results .snakemake/log 2>/dev/null
      local jobs
      jobs=$(find "$work/results" -name '*benchmark*.tsv' -o -path '*/benchmarks/*.tsv' 2>/dev/null | wc -l)
      echo "KEY: snakemake exit $rc after $wall s; $jobs jobs finished"
      return "$rc"
      ;;
    *)
      echo "unknown stage $1" >&2
      return 2
      ;;
  esac
}

if [ "${1:-}" = "--stage" ]; then
  STAGE_CAP=${STAGE_CAP:-60}
  stage_body "$2"
  exit $?
fi

# --- the run -------------------------------------------------------------------------
: >"$LOG"
: >"$ROWS"
printf 'stage\tstatus\tseconds\tcap\tkey\n' >"$TABLE"
echo "rfw2s device check, $(date -u '+%F %H:%M:%S') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), into $OUTDIR" \
  | tee -a "$LOG"
selected=" ${DEVICE_CHECK_STAGES:-} "
for entry in "${STAGES[@]}"; do
  name=$(field "$entry" 1)
  cap=$(field "$entry" 2)
  [ -z "${DEVICE_CHECK_STAGES:-}" ] || [[ "$selected" == *" $name "* ]] || continue
  left=$((BUDGET - SECONDS - 5))  # 5 s for the final table
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt 3 ]; then
    printf '%s\tskipped (no time left)\t0\t0\t\n' "$name" >>"$TABLE"
    continue
  fi
  echo "=== $name (cap $cap s): $(field "$entry" 3)" | tee -a "$LOG"
  out=/tmp/rfw2s_device_stage_$name.out
  start=$SECONDS
  : >"$out"
  STAGE_CAP=$cap timeout -k 3 "$cap" bash "$0" --stage "$name" 2>&1 | tee -a "$LOG" "$out"
  rc=${PIPESTATUS[0]}
  seconds=$((SECONDS - start))
  case "$rc" in
    0) status=ok ;;
    3) status=skipped ;;
    124 | 137) status="stopped at its cap" ;;
    *) status="failed (exit $rc)" ;;
  esac
  key=$(grep -h '^KEY: ' "$out" | tail -1 | cut -c6-)
  [ -n "$key" ] || key="last line: $(grep -v '^\s*$' "$out" | tail -1 | cut -c1-160)"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$seconds" "$cap" "$(echo "$key" | tr '\t|' '  ')" >>"$TABLE"
  echo "=== $name: $status after $seconds s" | tee -a "$LOG"
done

{
  echo
  echo "| stage | status | s | cap s | key numbers |"
  echo "| --- | --- | --- | --- | --- |"
  tail -n +2 "$TABLE" | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
  echo
  echo "whole run: $SECONDS s; files in $OUTDIR"
} | tee "$OUTDIR/summary.md" | tee -a "$LOG"
