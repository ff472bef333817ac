#!/usr/bin/env bash
# A job killed by Slurm, then the rerun, on the local cluster (tests/slurm/cluster.sh up
# first). Exits 0 only if
#   - a run through the SLURM profile (--retries 0, so nothing is silently retried) whose
#     running job is cancelled with scancel ends with an error naming that Slurm job
#     and its CANCELLED state,
#   - the rerun with --rerun-incomplete runs exactly the jobs the first run did not
#     finish (the cancelled one among them; as many as its dry run planned; none that
#     had finished),
#   - its tables equal those of an uninterrupted local run (every parquet table under
#     results/, exactly).
# To stay short it runs one experiment of the config: RFW2S_SLURM_FAULTS_EXPERIMENT
# (default: the config's last). The job cancelled is the first one seen running once
# RFW2S_SLURM_CANCEL_AFTER jobs (default 2) have completed. Other settings: lib.sh.
set -euo pipefail
# shellcheck source=tests/slurm/lib.sh
. "$(dirname "$0")/lib.sh"

CANCEL_AFTER=${RFW2S_SLURM_CANCEL_AFTER:-2}
config=$WORK/faults-config.yaml
experiment=$("$PYTHON" - "$CONFIG" "$config" "${RFW2S_SLURM_FAULTS_EXPERIMENT:-}" <<'EOF'
import sys, yaml
source, target, name = sys.argv[1:]
config = yaml.safe_load(open(source))
name = name or list(config["experiments"])[-1]
config["experiments"] = {name: config["experiments"][name]}
yaml.safe_dump(config, open(target, "w"), sort_keys=False)
print(name)
EOF
)
say "experiment $experiment of $CONFIG, runs in $WORK"
# shellcheck disable=SC2119  # no extra resources
mapfile -t SLURM < <(slurm_args)

reference=$(new_run faults-local "$config")
smk "$reference" --cores 1 --resources gpu=1 || { tail_log "$reference/snakemake.log"; die "the local run failed"; }

# 1. The run with a job cancelled while it runs.
run=$(new_run faults "$config")
start=$SECONDS
SMK_LOG=$run/first.log smk "$run" "${SLURM[@]}" --retries 0 &
snakemake_pid=$!
cancelled=""
while kill -0 "$snakemake_pid" 2>/dev/null && ((SECONDS - start < RUN_TIMEOUT)); do
    # The background run creates its log when it starts: until then there is nothing to
    # read (sed would fail, and set -e with pipefail would end this script).
    id=""
    [[ -f $run/first.log ]] && id=$(sed -n 's/^SLURM run ID: //p' "$run/first.log" | head -n 1)
    if [[ -n $id ]]; then
        states=$(squeue -h --name "$id" -t all -o '%i %T' || true)   # a busy controller: ask again
        done_jobs=$(grep -c ' COMPLETED$' <<<"$states" || true)
        running=$(awk '$2 == "RUNNING" {print $1; exit}' <<<"$states")
        if ((done_jobs >= CANCEL_AFTER)) && [[ -n $running ]]; then
            scancel "$running"
            cancelled=$running
            say "cancelled Slurm job $cancelled ($(squeue -h -j "$cancelled" -t all -o %k)) after $done_jobs completed jobs"
            break
        fi
    fi
    sleep 0.2
done
status=0
wait "$snakemake_pid" || status=$?
say "first run: exit status $status after $((SECONDS - start))s"
[[ -n $cancelled ]] || { tail_log "$run/first.log"; die "no job was seen running after $CANCEL_AFTER completed ones: nothing cancelled"; }
((status != 0)) || { tail_log "$run/first.log"; die "the run with a cancelled job reported success"; }
((status != 124 && status != 137)) || { tail_log "$run/first.log"; die "the run with a cancelled job did not end within ${RUN_TIMEOUT}s"; }
grep -q "SLURM-job '$cancelled' failed, SLURM status is: 'CANCELLED'" "$run/first.log" ||
    { tail_log "$run/first.log"; die "the run's log does not report Slurm job $cancelled as CANCELLED"; }
grep -A3 "^Error in rule" "$run/first.log" | head -n 4 >&2

# 2. The rerun: first what it plans (dry run), then the rerun itself.
SMK_LOG=$run/dry-run.log smk "$run" "${SLURM[@]}" --rerun-incomplete --dry-run ||
    { tail_log "$run/dry-run.log"; die "the dry run of the rerun failed"; }
planned=$(check planned "$run/dry-run.log")
start=$SECONDS
SMK_LOG=$run/rerun.log smk "$run" "${SLURM[@]}" --rerun-incomplete || { tail_log "$run/rerun.log"; die "the rerun failed"; }
say "rerun: ${planned} jobs planned, $((SECONDS - start))s"
check rerun --reference "$reference/snakemake.log" --first "$run/first.log" --rerun "$run/rerun.log" \
    --cancelled "$cancelled" --planned "$planned" || die "the rerun did not redo exactly what was missing (above)"
check check-run "$run/rerun.log" --partial --account "$ACCOUNT" --partition "$RFW2S_SLURM_PARTITION" >/dev/null ||
    die "the rerun's jobs are not what Snakemake asked for (above)"
check compare "$run/results" "$reference/results" || die "the rerun's tables differ from the uninterrupted run's (above)"
say "OK"
