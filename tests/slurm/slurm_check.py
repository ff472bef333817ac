"""Checks of a Snakemake run on the local Slurm cluster (tests/slurm/cluster.sh).

Used by run-tiny.sh, run-faults.sh and tests/test_slurm.py. Nothing here knows the
pipeline's rules or file layout: jobs and their resources are read from Snakemake's own
log, tables are found by searching the results folder, and Slurm's side comes from
`scontrol show job` (this cluster keeps finished jobs for MinJobAge = 1 hour).

    slurm_check.py profile-args PROFILE_DIR --cpus N [--default-cpus M] [--account A] [--partition P] [--set RULE:RES=V ...]
    slurm_check.py check-run LOG [--account A] [--partition P] [--summary FILE]
    slurm_check.py compare RESULTS_A RESULTS_B [--rtol R] [--exclude FOLDER ...] [--ignore COLUMN ...]
    slurm_check.py planned LOG          (jobs a dry run would submit: count)
    slurm_check.py outputs LOG          (every file the jobs of a run or dry run write)
    slurm_check.py jobs LOG             (one line per Slurm job of a run: id state comment)
    slurm_check.py timeline LOG         (submit/start/end of each Slurm job, seconds)
    slurm_check.py rerun --reference LOG --first LOG --rerun LOG --cancelled ID --planned N
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import yaml


# --- the profile, with the local cluster's overrides --------------------------------

def profile_args(profile_dir, cpus, account=None, partition=None, extra_set=(), default_cpus=None):
    """Command-line options that keep the profile's default-resources and set-resources
    and add the local cluster's values. On the command line these options *replace* the
    profile's lists (they do not merge), so the profile's entries are repeated here.

    cpus_per_task above ``cpus`` is lowered to it: a 2-CPU node refuses a job asking for
    8 ("More processors requested than permitted"); the default one above
    ``default_cpus`` (if given) to that."""
    profile = yaml.safe_load((Path(profile_dir) / "config.yaml").read_text()) or {}
    defaults = dict(profile.get("default-resources") or {})
    if "cpus_per_task" in defaults:
        defaults["cpus_per_task"] = min(int(defaults["cpus_per_task"]), cpus, default_cpus or cpus)
    if account:
        defaults["slurm_account"] = account
    if partition:
        defaults["slurm_partition"] = partition
    settings = []
    for rule, resources in (profile.get("set-resources") or {}).items():
        for name, value in resources.items():
            if name == "cpus_per_task":
                value = min(int(value), cpus)
            settings.append(f"{rule}:{name}={value}")
    settings += list(extra_set)
    args = []
    if defaults:
        args += ["--default-resources", *(f"{k}={v}" for k, v in defaults.items())]
    if settings:
        args += ["--set-resources", *settings]
    return args


# --- Snakemake's log -----------------------------------------------------------------

BLOCK = re.compile(r"^(local)?rule (\w+):\n((?:    .*\n?)*)", re.M)
SUBMITTED = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.*?)\)\.?$", re.M)


def parse_resources(text):
    """`resources: a=1, b=2 GB, c=x` -> {'a': '1', 'b': '2 GB', 'c': 'x'}"""
    out = {}
    for item in text.split(", "):
        if "=" in item:
            key, value = item.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def log_jobs(text):
    """Snakemake jobid -> {rule, local, has_output, resources} from a run's log."""
    jobs = {}
    for match in BLOCK.finditer(text):
        body = match.group(3)
        jobid = re.search(r"^    jobid: (\d+)$", body, re.M)
        if jobid is None:
            continue
        resources = re.search(r"^    resources: (.*)$", body, re.M)
        output = re.search(r"^    output: (.*)$", body, re.M)
        jobs[int(jobid.group(1))] = {
            "rule": match.group(2),
            "local": bool(match.group(1)),
            "has_output": output is not None,
            # A job's identity across runs (Snakemake's jobids are per run).
            "key": f"{match.group(2)}: {output.group(1) if output else ''}",
            "resources": parse_resources(resources.group(1)) if resources else {},
        }
    return jobs


def submissions(text):
    """[(snakemake jobid, slurm jobid, slurm log path)] in the order of the log."""
    return [(int(a), b, c) for a, b, c in SUBMITTED.findall(text)]


def finished(text):
    """Snakemake jobids a run reported as finished."""
    return {int(i) for i in re.findall(r"^Finished jobid: (\d+)", text, re.M)}


def check_rerun(reference, first, rerun, cancelled, planned_count):
    """After a job of the first run was cancelled: the rerun ran exactly the jobs the first
    run did not finish (the cancelled one among them), as many as its dry run planned.
    Logs: reference = an uninterrupted run of the same config (any executor)."""
    def keys(text, which):
        jobs = log_jobs(text)
        return {jobs[i]["key"] for i in which(jobs, text)}

    all_jobs = keys(reference, lambda jobs, t: [i for i, j in jobs.items() if j["has_output"]])
    done_first = keys(first, lambda jobs, t: [i for i in finished(t) if jobs.get(i, {}).get("has_output")])
    first_jobs = log_jobs(first)
    cancelled_keys = {first_jobs[i]["key"] for i, sid, _ in submissions(first) if sid == str(cancelled)}
    redone = keys(rerun, lambda jobs, t: sorted({i for i, _, _ in submissions(t)}))
    problems = []
    if not cancelled_keys:
        problems.append(f"Slurm job {cancelled} is not in the first run's log")
    if done_first & redone:
        problems.append(f"the rerun redid jobs the first run had finished: {sorted(done_first & redone)}")
    if done_first | redone != all_jobs:
        problems.append(f"first run + rerun != the whole DAG: missing {sorted(all_jobs - done_first - redone)}, "
                        f"extra {sorted((done_first | redone) - all_jobs)}")
    if not cancelled_keys <= redone:
        problems.append(f"the cancelled job was not redone: {sorted(cancelled_keys)}")
    if len(redone) != planned_count:
        problems.append(f"the rerun ran {len(redone)} jobs, its dry run planned {planned_count}")
    if not done_first:
        problems.append("the first run finished no job before the cancel: nothing shows that finished work is kept")
    summary = (f"whole DAG {len(all_jobs)} jobs; first run finished {len(done_first)}; "
               f"cancelled {sorted(cancelled_keys)}; rerun planned {planned_count}, ran {len(redone)}")
    return problems, summary


def outputs(text):
    """Every file the jobs of a run's or dry run's log write, sorted."""
    return sorted({f for match in BLOCK.finditer(text)
                   for line in re.findall(r"^    output: (.*)$", match.group(3), re.M) for f in line.split(", ")})


def planned(text):
    """Jobs a run's or dry run's log would submit to Slurm: those that write files (a job
    that writes none, like `all`, runs inside Snakemake)."""
    return sum(1 for job in log_jobs(text).values() if job["has_output"])


# --- Slurm's records -----------------------------------------------------------------

def scontrol_job(slurm_id):
    out = subprocess.run(["scontrol", "show", "job", "-o", str(slurm_id)], capture_output=True,
                         text=True, timeout=30)
    if out.returncode != 0:
        raise SystemExit(f"scontrol show job {slurm_id} failed: {out.stderr.strip()} "
                         "(purged? MinJobAge is 1 hour on the test cluster)")
    record = {}
    # key=value pairs; values have no spaces except Comment/Command which come last-ish:
    # split on " Key=" boundaries instead of on spaces.
    for match in re.finditer(r"(?:^|\s)([A-Za-z:/]+)=(.*?)(?=\s[A-Za-z:/]+=|$)", out.stdout.strip()):
        record[match.group(1)] = match.group(2)
    return record


def megabytes(text):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]?)", text)
    if m is None:
        raise ValueError(f"memory {text!r}")
    factor = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 ** 2}[m.group(2)]
    return float(m.group(1)) * factor


def minutes(text):
    """Slurm time limit [D-]HH:MM:SS or MM:SS -> minutes."""
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
    parts = [int(p) for p in text.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    h, m, s = parts
    return days * 1440 + h * 60 + m + s / 60


def gpu_request(record):
    """The GPU count Slurm recorded for a job (0 if none)."""
    for field in ("TresPerJob", "TresPerNode", "TresPerTask"):
        m = re.search(r"gres[:/]gpu(?::[\w.]+)?[:=](\d+)", record.get(field, ""))
        if m:
            return int(m.group(1))
    m = re.search(r"gres/gpu=(\d+)", record.get("TRES", ""))
    return int(m.group(1)) if m else 0


def check_run(text, account=None, partition=None, partial=False):
    """Every job of the run was a Slurm job that completed, with the resources Snakemake
    printed for it. Returns (problems, table rows)."""
    jobs = log_jobs(text)
    subs = submissions(text)
    run_id = re.search(r"^SLURM run ID: (\S+)$", text, re.M)
    problems, rows = [], []
    if run_id is None:
        problems.append("no 'SLURM run ID' in the log: did the run use the slurm executor?")
    by_job = {}
    for sm_id, slurm_id, _ in subs:
        by_job.setdefault(sm_id, []).append(slurm_id)
    for sm_id, job in sorted(jobs.items()):
        if job["local"]:
            if job["has_output"]:
                problems.append(f"job {sm_id} (rule {job['rule']}) writes files but ran locally, not on Slurm")
            continue
        ids = by_job.get(sm_id, [])
        if len(ids) != 1:
            problems.append(f"job {sm_id} (rule {job['rule']}) was submitted {len(ids)} times: {ids}")
            if not ids:
                continue
        rec = scontrol_job(ids[-1])
        res = job["resources"]
        want_gpu = int(res.get("gpu", 0) or 0)
        got = {
            "state": rec.get("JobState"),
            "gpus": gpu_request(rec),
            "mem_mb": megabytes(rec.get("MinMemoryNode", "0")),
            "minutes": minutes(rec["TimeLimit"]) if rec.get("TimeLimit", "UNLIMITED") != "UNLIMITED" else None,
            "cpus": int(rec.get("NumCPUs", 0)),
        }
        name = f"job {sm_id} (rule {job['rule']}, Slurm job {ids[-1]})"
        if got["state"] != "COMPLETED":
            problems.append(f"{name}: Slurm state {got['state']}")
        if run_id and rec.get("JobName") != run_id.group(1):
            problems.append(f"{name}: job name {rec.get('JobName')} is not the run's id {run_id.group(1)}")
        if not rec.get("Comment", "").startswith(f"rule_{job['rule']}"):
            problems.append(f"{name}: Slurm comment {rec.get('Comment')!r} names another rule")
        if got["gpus"] != want_gpu:
            problems.append(f"{name}: Snakemake resources gpu={want_gpu}, Slurm recorded {got['gpus']} GPU(s)")
        if "mem_mb" not in res or got["mem_mb"] != float(res["mem_mb"]):
            problems.append(f"{name}: mem_mb={res.get('mem_mb')}, Slurm's memory limit {rec.get('MinMemoryNode')}")
        if "runtime" not in res or got["minutes"] != float(res["runtime"]):
            problems.append(f"{name}: runtime={res.get('runtime')} min, Slurm's time limit {rec.get('TimeLimit')}")
        if "cpus_per_task" in res and got["cpus"] != int(res["cpus_per_task"]):
            problems.append(f"{name}: cpus_per_task={res['cpus_per_task']}, Slurm gave {got['cpus']} CPUs")
        if account and rec.get("Account") != account:
            problems.append(f"{name}: account {rec.get('Account')}, expected {account}")
        if partition and rec.get("Partition") != partition:
            problems.append(f"{name}: partition {rec.get('Partition')}, expected {partition}")
        rows.append((job["rule"], ids[-1], got["state"], want_gpu, got["gpus"], res.get("mem_mb"),
                     rec.get("MinMemoryNode"), res.get("runtime"), rec.get("TimeLimit"), got["cpus"]))
    remote = [j for j in jobs.values() if not j["local"]]
    if not remote:
        problems.append("no job ran on Slurm")
    if partial:  # a rerun: only some of the jobs, maybe all of one kind
        pass
    elif not any(int(j["resources"].get("gpu", 0) or 0) for j in remote):
        problems.append("no job asked for a GPU: the GPU check checked nothing")
    elif all(int(j["resources"].get("gpu", 0) or 0) for j in remote):
        problems.append("every job asked for a GPU: the no-GPU check checked nothing")
    if len(subs) != len({s[1] for s in subs}):
        problems.append("a Slurm job id was reported twice")
    rows.sort(key=lambda row: int(row[1]))
    return problems, rows


def slurm_jobs(text):
    """(slurm id, state, comment) of every Slurm job a run's log reports."""
    out = []
    for _, slurm_id, _ in submissions(text):
        rec = scontrol_job(slurm_id)
        out.append((slurm_id, rec.get("JobState", "?"), rec.get("Comment", "?")))
    return out


def timeline(text):
    """Per Slurm job of a run: seconds from the first submission to its submission, start
    and end, as Slurm recorded them; and the sum of the jobs' run times."""
    from datetime import datetime

    rows = []
    for _, slurm_id, _ in submissions(text):
        rec = scontrol_job(slurm_id)
        times = [datetime.fromisoformat(rec[k]) for k in ("SubmitTime", "StartTime", "EndTime")]
        rows.append((slurm_id, *times, rec.get("Comment", "?")))
    if not rows:
        return []
    t0 = min(r[1] for r in rows)
    return [(sid, (sub - t0).total_seconds(), (st - t0).total_seconds(), (end - t0).total_seconds(), comment)
            for sid, sub, st, end, comment in sorted(rows, key=lambda r: r[2])]


# --- tables -------------------------------------------------------------------------

def compare(a, b, rtol=0.0, exclude=(), ignore=()):
    """Every parquet table under two results folders (but those under the folders ``exclude``):
    the same relative paths, equal DataFrames (exactly, or numbers to ``rtol`` relative), the
    columns ``ignore`` left out. Returns (problems, number of tables)."""
    import pandas as pd

    a, b = Path(a), Path(b)

    def tables(root):
        return {p.relative_to(root) for p in root.rglob("*.parquet") if p.relative_to(root).parts[0] not in exclude}

    tables_a, tables_b = tables(a), tables(b)
    problems = []
    if not tables_a:
        problems.append(f"no parquet table under {a}")
    for only, where in ((tables_a - tables_b, b), (tables_b - tables_a, a)):
        for rel in sorted(only):
            problems.append(f"{rel}: missing under {where}")
    for rel in sorted(tables_a & tables_b):
        try:
            ours, theirs = (pd.read_parquet(root / rel) for root in (a, b))
            ours, theirs = (df.drop(columns=[c for c in ignore if c in df.columns]) for df in (ours, theirs))
            pd.testing.assert_frame_equal(ours, theirs, check_exact=rtol == 0, rtol=rtol, atol=0)
        except AssertionError as exc:
            problems.append(f"{rel}: differs: {str(exc).strip()[:400]}")
    return problems, len(tables_a & tables_b)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile-args")
    p.add_argument("profile")
    p.add_argument("--cpus", type=int, required=True)
    p.add_argument("--default-cpus", type=int)
    p.add_argument("--account")
    p.add_argument("--partition")
    p.add_argument("--set", action="append", default=[])
    p = sub.add_parser("check-run")
    p.add_argument("log")
    p.add_argument("--account")
    p.add_argument("--partition")
    p.add_argument("--partial", action="store_true", help="a rerun: skip the checks that need both kinds of job")
    p = sub.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=0.0, help="numbers equal to this relative (default: exactly)")
    p.add_argument("--exclude", action="append", default=[], help="a folder of the results not compared")
    p.add_argument("--ignore", action="append", default=[], help="a column not compared")
    p = sub.add_parser("planned")
    p.add_argument("log")
    p = sub.add_parser("outputs")
    p.add_argument("log")
    p = sub.add_parser("jobs")
    p.add_argument("log")
    p = sub.add_parser("timeline")
    p.add_argument("log")
    p = sub.add_parser("rerun")
    p.add_argument("--reference", required=True)
    p.add_argument("--first", required=True)
    p.add_argument("--rerun", required=True)
    p.add_argument("--cancelled", required=True)
    p.add_argument("--planned", type=int, required=True)
    args = parser.parse_args(argv)

    if args.command == "timeline":
        rows = timeline(Path(args.log).read_text())
        print(f"{'slurm id':>8} {'submit':>7} {'start':>7} {'end':>7} {'ran':>5}  comment")
        for sid, sub_s, start, end, comment in rows:
            print(f"{sid:>8} {sub_s:7.0f} {start:7.0f} {end:7.0f} {end - start:5.0f}  {comment}")
        if rows:
            print(f"first submission to last end: {max(r[3] for r in rows):.0f} s; "
                  f"sum of run times: {sum(r[3] - r[2] for r in rows):.0f} s")
        return 0
    if args.command == "rerun":
        read = lambda name: Path(getattr(args, name)).read_text()  # noqa: E731
        problems, summary = check_rerun(read("reference"), read("first"), read("rerun"), args.cancelled, args.planned)
        print(summary)
        for problem in problems:
            print(f"FAIL: {problem}", file=sys.stderr)
        return 1 if problems else 0
    if args.command == "profile-args":
        print("\n".join(profile_args(args.profile, args.cpus, args.account, args.partition, args.set,
                                     args.default_cpus)))
        return 0
    if args.command == "planned":
        print(planned(Path(args.log).read_text()))
        return 0
    if args.command == "outputs":
        print("\n".join(outputs(Path(args.log).read_text())))
        return 0
    if args.command == "jobs":
        for row in slurm_jobs(Path(args.log).read_text()):
            print(*row)
        return 0
    if args.command == "check-run":
        problems, rows = check_run(Path(args.log).read_text(), args.account, args.partition, args.partial)
        print(f"{'rule':<20} {'slurm id':>8} {'state':<10} gpu(asked/slurm) mem_mb(asked/slurm) "
              "runtime(asked/slurm) cpus")
        for rule, sid, state, g_want, g_got, m_want, m_got, t_want, t_got, cpus in rows:
            print(f"{rule:<20} {sid:>8} {state:<10} {g_want}/{g_got:<14} {m_want}/{m_got:<14} "
                  f"{t_want}/{t_got:<12} {cpus}")
        print(f"{len(rows)} Slurm jobs checked")
    else:
        problems, n = compare(args.a, args.b, args.rtol, args.exclude, args.ignore)
        print(f"{n} tables compared")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
