#!/usr/bin/env bash
# GPU jobs planned on a machine without a GPU (a cluster's login node), on the local cluster
# (tests/slurm/cluster.sh up first). The emulated CuPy (tests/emulated_cupy.py) is importable
# everywhere but has a device only where CUDA_VISIBLE_DEVICES names one, as Slurm sets it in a
# job it gave the (fake) GPU: the submitting process sees no GPU. Exits 0 only if
#   - the tiny config's experiment `tiny` with backend: cupy and gpu_memory_gb, submitted from
#     here, runs every job on Slurm; the GPU rules (curves, validation) log CuPy, the others
#     NumPy; it wrote exactly the files (keys) its dry run planned;
#   - its tables equal a local NumPy run's to 1e-9 relative (the Lanczos diagnostics aside);
#   - with --set-resources curves:gpu=0 the curve jobs stop, naming the host, the Slurm job and
#     the gpu resource, and no curve table is written;
#   - backend: auto from here warns once that it resolved to NumPy, and runs with no missing input.
# Settings: see lib.sh.
set -euo pipefail
# shellcheck source=tests/slurm/lib.sh
. "$(dirname "$0")/lib.sh"

EXPERIMENT=tiny
unset CUDA_VISIBLE_DEVICES
export RFW2S_EMULATED_GPU=when-visible
# The emulated CuPy's import shims for every process of the runs (Slurm's --export=ALL carries them).
eval "$("$PYTHON" - "$REPO/tests" "$WORK/emulated" <<'EOF'
import shlex, sys
sys.path.insert(0, sys.argv[1])
import emulated_cupy
for name, value in emulated_cupy.subprocess_environment(sys.argv[2]).items():
    print(f"export {name}={shlex.quote(value)}")
EOF
)"
"$PYTHON" -c "from rfw2s.backend import probe_gpu; assert probe_gpu()[0] is None, 'the submitter sees a GPU'" ||
    die "this process must see no GPU"

config_with() {  # config_with FILE KEY=VALUE...: the experiment of the tiny config, top-level keys set
    "$PYTHON" - "$CONFIG" "$EXPERIMENT" "$@" <<'EOF'
import sys, yaml
source, name, target, *settings = sys.argv[1:]
config = yaml.safe_load(open(source))
config["experiments"] = {name: config["experiments"][name]}
for setting in settings:
    key, value = setting.split("=", 1)
    config[key] = yaml.safe_load(value)
yaml.safe_dump(config, open(target, "w"), sort_keys=False)
EOF
}
cupy_config=$WORK/cupy.yaml
config_with "$cupy_config" backend=cupy gpu_memory_gb=16
# shellcheck disable=SC2119  # no extra resources
mapfile -t SLURM < <(slurm_args)

# 1. The dry run from here, then the run: the same files, every job on Slurm, CuPy where planned.
dry=$(new_run gpu-dry "$cupy_config")
smk "$dry" "${SLURM[@]}" --dry-run || { tail_log "$dry/snakemake.log"; die "the dry run failed"; }
slurm=$(new_run gpu "$cupy_config")
start=$SECONDS
smk "$slurm" "${SLURM[@]}" || { tail_log "$slurm/snakemake.log" 60; die "the Slurm run failed (log: $slurm/snakemake.log)"; }
say "Slurm run, backend cupy: $((SECONDS - start))s"
check check-run "$slurm/snakemake.log" --account "$ACCOUNT" --partition "$RFW2S_SLURM_PARTITION" ||
    die "the Slurm run's jobs are not what Snakemake asked for (above)"
diff <(check outputs "$dry/snakemake.log") <(check outputs "$slurm/snakemake.log") >&2 ||
    die "the run wrote other files (keys) than its dry run planned (above)"
check outputs "$slurm/snakemake.log" | while read -r file; do
    [[ -e $slurm/$file ]] || die "planned $file is missing"
done
for log in "$slurm"/results/cache/curves/*/curves.log "$slurm/results/$EXPERIMENT/logs/validation.log"; do
    grep -q "backend: cupy (planned cupy)" "$log" || die "$log: the GPU rule did not compute on CuPy"
done
for log in "$slurm"/results/cache/teachers/*/r*.log; do
    grep -q "backend: numpy (planned numpy)" "$log" || die "$log: a teacher fit did not run NumPy"
done
say "GPU rules on CuPy, the others on NumPy; files as the dry run planned ($(check planned "$dry/snakemake.log") jobs)"

# 2. The same numbers as a local NumPy run.
numpy_config=$WORK/numpy.yaml
config_with "$numpy_config" backend=numpy
local_run=$(new_run gpu-local "$numpy_config")
smk "$local_run" --cores 1 --resources gpu=1 || { tail_log "$local_run/snakemake.log"; die "the local run failed"; }
check compare "$slurm/results" "$local_run/results" --rtol 1e-9 --exclude cache --ignore lanczos_steps \
    --ignore achieved_tol || die "the CuPy tables differ from the NumPy run's (above)"

# 3. A curve job Slurm gives no GPU stops, and writes no curve table.
mapfile -t NO_GPU < <(slurm_args --set curves:gpu=0)
nogpu=$(new_run gpu-none "$cupy_config")
if smk "$nogpu" "${NO_GPU[@]}" --retries 0 "results/$EXPERIMENT/summary.parquet"; then
    die "the run with curves:gpu=0 succeeded"
fi
logs=("$nogpu"/results/cache/curves/*/curves.log)
[[ -f ${logs[0]} ]] || { tail_log "$nogpu/snakemake.log" 60; die "no curve job ran"; }
for log in "${logs[@]}"; do
    for part in "curves job stopped before writing anything" "SLURM_JOB_ID=" "the resource gpu=0" "host "; do
        grep -q "$part" "$log" || { cat "$log" >&2; die "$log: the message lacks '$part'"; }
    done
done
[[ -z $(find "$nogpu/results" -name curves.parquet) ]] || die "a curve job without a GPU wrote its table"
say "curves:gpu=0: the curve jobs stopped with the message; no curve table"

# 4. auto from this machine (no GPU): one warning, NumPy everywhere, nothing missing.
auto_config=$WORK/auto.yaml
config_with "$auto_config" backend=auto
auto=$(new_run gpu-auto "$auto_config")
smk "$auto" "${SLURM[@]}" "results/$EXPERIMENT/summary.parquet" || { tail_log "$auto/snakemake.log" 60; die "the auto run failed"; }
count=$(grep -c "backend: auto resolved to NumPy on this machine" "$auto/snakemake.log" || true)
[[ $count == 1 ]] || die "backend: auto from a machine without a GPU warned $count times, not once"
! grep -q "MissingInputException\|Missing input" "$auto/snakemake.log" || die "the auto run missed an input"
grep -q "backend: numpy (planned numpy)" "$auto"/results/cache/curves/*/curves.log || die "auto did not plan NumPy"
say "OK: run-gpu.sh ($((SECONDS)) s)"
