# shellcheck shell=bash
# Shared by run-tiny.sh and run-faults.sh (sourced): how to run the workflow from a
# temporary folder, locally and on the local Slurm cluster of cluster.sh.
#
# Settings (environment):
#   RFW2S_PYTHON               interpreter with Snakemake and the SLURM plugin (default: python3 on PATH)
#   RFW2S_SLURM_CONFIG         workflow config (default tests/configs/tiny.yaml)
#   RFW2S_SLURM_ACCOUNT        account given to the plugin (default rfw2s-local; this
#                              cluster has no accounting, so any name is accepted)
#   RFW2S_SLURM_CPUS_PER_TASK  cap on the profile's default cpus_per_task (default 1: two
#                              light jobs share the 2-CPU node); the per-rule ones (the heavy
#                              steps ask for 8) are capped at the node's CPUs. See docs/cluster.md.
#   RFW2S_SLURM_RUN_TIMEOUT    seconds one Snakemake run may take (default 900)
#   RFW2S_SLURM_WORK           folder for the runs (default: a new temporary one, removed
#                              at exit unless RFW2S_SLURM_KEEP=1; a folder you name is kept)

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/tests/slurm
CONFIG=${RFW2S_SLURM_CONFIG:-$REPO/tests/configs/tiny.yaml}
ACCOUNT=${RFW2S_SLURM_ACCOUNT:-rfw2s-local}
RUN_TIMEOUT=${RFW2S_SLURM_RUN_TIMEOUT:-900}

die() { echo "$(basename "$0"): $*" >&2; exit 1; }
say() { echo "$(basename "$0"): $*" >&2; }

PYTHON=${RFW2S_PYTHON:-$(command -v python3 || true)}
[[ -n $PYTHON ]] || die "no python3 on PATH (set RFW2S_PYTHON)"
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")   # absolute: runs use a bare PATH
"$PYTHON" -c "import snakemake, snakemake_executor_plugin_slurm" 2>/dev/null ||
    die "$PYTHON lacks snakemake or snakemake-executor-plugin-slurm (pip install -e '.[test]'; or set RFW2S_PYTHON)"

eval "$("$HERE/cluster.sh" env)"
if ! [[ -f $SLURM_CONF ]] || ! timeout 10 sinfo >/dev/null 2>&1; then
    die "the local Slurm cluster does not answer: start it with tests/slurm/cluster.sh up"
fi
NODE_CPUS=$(sinfo -h -p "$RFW2S_SLURM_PARTITION" -o %c | head -n 1)
DEFAULT_CPUS=${RFW2S_SLURM_CPUS_PER_TASK:-1}

# Runs get the system's PATH and nothing else (as tests/workflow_helpers.py does): a job
# must find the interpreter running Snakemake through the workflow (it puts that folder
# first on PATH) and Slurm (sbatch --export=ALL), not through this shell's PATH. The
# cluster's folder comes first for its srun shim (cluster.sh, write_srun_shim).
BARE_PATH=$RFW2S_SLURM_STATE/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

REMOVE_WORK=0
if [[ -n ${RFW2S_SLURM_WORK:-} ]]; then
    WORK=$RFW2S_SLURM_WORK
    mkdir -p "$WORK"
else
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/rfw2s-slurm-run.XXXXXX")
    [[ ${RFW2S_SLURM_KEEP:-0} == 1 ]] || REMOVE_WORK=1
fi
cleanup() {
    cancel_runs
    if ((REMOVE_WORK)); then rm -rf "$WORK"; else say "runs kept in $WORK"; fi
}
trap cleanup EXIT

# Cancel what is left of every Slurm run started here (a run that timed out, a failure).
cancel_runs() {
    local log id
    for log in "$WORK"/*/*.log; do
        [[ -f $log ]] || continue
        id=$(sed -n 's/^SLURM run ID: //p' "$log" | tail -n 1)
        if [[ -n $id ]]; then scancel --name "$id" 2>/dev/null || true; fi
    done
}

# A fresh run folder holding the config: new_run NAME [config file]
new_run() {
    rm -rf "${WORK:?}/$1"
    mkdir -p "$WORK/$1"
    cp "${2:-$CONFIG}" "$WORK/$1/config.yaml"
    echo "$WORK/$1"
}

# Snakemake on the repository's Snakefile in a run folder: smk DIR ARGS...
# Its output goes to $SMK_LOG (default DIR/snakemake.log). Past RUN_TIMEOUT it gets TERM,
# then KILL 20 s later: Snakemake answers TERM by waiting for jobs it may never see end.
smk() {
    local dir=$1
    shift
    (cd "$dir" && env PATH="$BARE_PATH" timeout -k 20 "$RUN_TIMEOUT" "$PYTHON" -m snakemake -s "$REPO/Snakefile" \
        --directory "$dir" --configfile "$dir/config.yaml" "$@") >"${SMK_LOG:-$dir/snakemake.log}" 2>&1
}

# The options of a run on the local cluster: the project's profile, with
#  - the cluster's partition and an account (default-resources; on the command line these
#    lists replace the profile's, so slurm_check.py repeats the profile's entries),
#  - cpus_per_task capped to what the node has: the heavy steps get the whole node, as
#    they would get a GPU node's CPUs (without binding, their BLAS threads would share
#    cores with a neighbour's), the other jobs 1 CPU each, two at a time,
#  - job states from squeue: without accounting sacct fails, and the plugin would never
#    see a job finish; MinJobAge is an hour, so squeue still lists finished jobs,
#  - status checks every second instead of after 40 s (a tiny DAG's jobs take seconds),
#  - Slurm logs of successful jobs kept (checked afterwards).
# Extra per-rule resources: slurm_args [--set RULE:RES=VALUE ...]
slurm_args() {
    echo --workflow-profile
    echo "$REPO/workflow/profiles/slurm"
    "$PYTHON" "$HERE/slurm_check.py" profile-args "$REPO/workflow/profiles/slurm" --cpus "$NODE_CPUS" \
        --default-cpus "$DEFAULT_CPUS" --account "$ACCOUNT" --partition "$RFW2S_SLURM_PARTITION" "$@"
    printf '%s\n' --slurm-status-command squeue --slurm-init-seconds-before-status-checks 1 \
        --seconds-between-status-checks 1 --slurm-keep-successful-logs
}

check() { "$PYTHON" "$HERE/slurm_check.py" "$@"; }

tail_log() { echo "---- last lines of $1" >&2; tail -n "${2:-40}" "$1" >&2; }
