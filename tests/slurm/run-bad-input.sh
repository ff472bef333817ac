#!/usr/bin/env bash
# Runs the SLURM profile on the local cluster (tests/slurm/cluster.sh up first) with
# input Slurm must refuse, and checks that each run ends (no hang) with the reason shown:
#
#   no-partition      the profile alone: no account, no partition. This cluster has no
#                     default partition (cluster.sh), so it needs one, as many real
#                     clusters do: sbatch's "No partition specified" must be shown.
#                     (Requiring an account too would need slurmdbd: without accounting,
#                     a partition's AllowAccounts refuses every job, named account or not.)
#   unknown-partition a partition the cluster does not have: sbatch's "invalid partition".
#   too-much-memory   one rule asks for 10 TB (--set-resources RULE:mem_mb=10000000): the
#                     run must say which rule and how much, and sbatch's refusal.
#
#   tests/slurm/run-bad-input.sh [case ...]     (default: all three)
# Each case runs one experiment of the config (the last; RFW2S_SLURM_FAULTS_EXPERIMENT)
# and may take RFW2S_SLURM_BAD_TIMEOUT seconds (default 180). Other settings: lib.sh.
set -euo pipefail
# shellcheck source=tests/slurm/lib.sh
. "$(dirname "$0")/lib.sh"

BAD_TIMEOUT=${RFW2S_SLURM_BAD_TIMEOUT:-180}
BIG_MB=10000000
config=$WORK/bad-input-config.yaml
"$PYTHON" - "$CONFIG" "$config" "${RFW2S_SLURM_FAULTS_EXPERIMENT:-}" <<'EOF'
import sys, yaml
source, target, name = sys.argv[1:]
config = yaml.safe_load(open(source))
name = name or list(config["experiments"])[-1]
config["experiments"] = {name: config["experiments"][name]}
yaml.safe_dump(config, open(target, "w"), sort_keys=False)
EOF

# The options of slurm_args without account and partition (the profile sets neither);
# arguments go to slurm_check.py profile-args.
bare_profile_args() {
    echo --workflow-profile
    echo "$REPO/workflow/profiles/slurm"
    "$PYTHON" "$HERE/slurm_check.py" profile-args "$REPO/workflow/profiles/slurm" --cpus "$NODE_CPUS" \
        --default-cpus "$DEFAULT_CPUS" "$@"
    printf '%s\n' --slurm-status-command squeue --slurm-init-seconds-before-status-checks 1 \
        --seconds-between-status-checks 1
}

# bad_run NAME ARGS...: the run must fail, not time out; its log is $dir/snakemake.log.
bad_run() {
    local name=$1 start=$SECONDS status=0
    shift
    dir=$(new_run "bad-$name" "$config")
    RUN_TIMEOUT=$BAD_TIMEOUT smk "$dir" "$@" || status=$?
    elapsed=$((SECONDS - start))
    if ((status == 0)); then tail_log "$dir/snakemake.log"; die "$name: the run succeeded"; fi
    if ((status == 124 || status == 137)); then tail_log "$dir/snakemake.log"; die "$name: no end after ${BAD_TIMEOUT}s (a hang)"; fi
}

expect() {  # expect NAME PATTERN (extended regex, in the run's log)
    grep -qE -- "$2" "$dir/snakemake.log" || { tail_log "$dir/snakemake.log"; die "$1: the log does not show /$2/"; }
}

case_no_partition() {
    local args
    mapfile -t args < <(bare_profile_args)
    bad_run no-partition "${args[@]}"
    expect no-partition "SLURM sbatch failed"
    expect no-partition "No partition specified or system default partition"
    say "no-partition: stopped after ${elapsed}s: $(grep -m1 -oE "sbatch: error: Batch job submission failed: [^'\\]*" "$dir/snakemake.log")"
}

case_unknown_partition() {
    local args
    mapfile -t args < <(bare_profile_args --partition no-such-partition)
    bad_run unknown-partition "${args[@]}"
    expect unknown-partition "SLURM sbatch failed"
    expect unknown-partition "invalid partition specified: no-such-partition"
    say "unknown-partition: stopped after ${elapsed}s: $(grep -m1 -oE "sbatch: error: invalid partition specified: [^ '\\]*" "$dir/snakemake.log")"
}

case_too_much_memory() {
    local args rule dry
    # The rule whose jobs are submitted first (the first job of a dry run): the run fails
    # at once.
    dry=$(new_run bad-dry "$config")
    mapfile -t args < <(slurm_args)
    smk "$dry" "${args[@]}" --dry-run || { tail_log "$dry/snakemake.log"; die "too-much-memory: the dry run failed"; }
    rule=$(sed -nE 's/^rule (\w+):$/\1/p' "$dry/snakemake.log" | head -n 1)
    mapfile -t args < <(slurm_args --set "$rule:mem_mb=$BIG_MB")
    bad_run too-much-memory "${args[@]}"
    expect too-much-memory "Error in rule $rule:"
    expect too-much-memory "--mem $BIG_MB( |$)"
    expect too-much-memory "Memory specification can not be satisfied"
    say "too-much-memory: stopped after ${elapsed}s: rule $rule with --mem $BIG_MB refused: $(grep -m1 -oE "sbatch: error: Memory specification can not be satisfied" "$dir/snakemake.log")"
}

cases=("$@")
((${#cases[@]})) || cases=(no-partition unknown-partition too-much-memory)
for c in "${cases[@]}"; do
    case $c in
        no-partition) case_no_partition ;;
        unknown-partition) case_unknown_partition ;;
        too-much-memory) case_too_much_memory ;;
        *) die "unknown case $c (no-partition, unknown-partition, too-much-memory)" ;;
    esac
done
say "OK: ${cases[*]}"
