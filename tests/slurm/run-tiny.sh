#!/usr/bin/env bash
# The tiny config through the SLURM profile on the local cluster (tests/slurm/cluster.sh
# up first), against a plain local run. Exits 0 only if
#   - every job that writes files ran as a Slurm job, and completed,
#   - the jobs whose resources say gpu=1 asked Slurm for one GPU, the others for none,
#   - Slurm's memory and time limits of each job are the job's mem_mb and runtime,
#     its partition and account the ones given here,
#   - every parquet table under results/ (found recursively, compared by relative path,
#     exactly) equals the local run's (snakemake --cores 1 --resources gpu=1), and both
#     runs wrote the same set of tables.
# Settings: see lib.sh (RFW2S_SLURM_CONFIG, RFW2S_SLURM_WORK, RFW2S_SLURM_KEEP, ...).
set -euo pipefail
# shellcheck source=tests/slurm/lib.sh
. "$(dirname "$0")/lib.sh"

say "config $CONFIG, runs in $WORK"
# shellcheck disable=SC2119  # no extra resources
mapfile -t SLURM < <(slurm_args)

slurm=$(new_run slurm)
start=$SECONDS
smk "$slurm" "${SLURM[@]}" || { tail_log "$slurm/snakemake.log" 60; die "the Slurm run failed (log: $slurm/snakemake.log)"; }
slurm_s=$((SECONDS - start))
say "Slurm run: ${slurm_s}s"

check timeline "$slurm/snakemake.log"
check check-run "$slurm/snakemake.log" --account "$ACCOUNT" --partition "$RFW2S_SLURM_PARTITION" ||
    die "the Slurm run's jobs are not what Snakemake asked for (above)"

local_run=$(new_run local)
start=$SECONDS
smk "$local_run" --cores 1 --resources gpu=1 || { tail_log "$local_run/snakemake.log"; die "the local run failed"; }
local_s=$((SECONDS - start))
say "local run: ${local_s}s"

check compare "$slurm/results" "$local_run/results" || die "the Slurm run's tables differ from the local run's (above)"
say "OK: Slurm run ${slurm_s}s, local run ${local_s}s, $(nproc) CPUs, $(check planned "$slurm/snakemake.log") Slurm jobs"
