"""Per-stage wall time, start-up share and peak memory of a finished pipeline run, from the
`benchmark:` file every rule writes and the start-up line of its log: results/<experiment>/
benchmarks/**.tsv (logs/<rule>.log) for an experiment's own jobs, and results/cache/<step>/
<key>/<name>.benchmark.tsv (<name>.log) for the shared steps (listed as `cache`).

    python bench/stage_times.py results
"""
import re
import sys
from pathlib import Path

import pandas as pd

STARTUP = re.compile(r"start-up \(interpreter and imports\): ([\d.]+) s")


def _startup(log: Path) -> float:
    """The job's start-up from its log (NaN where it has none)."""
    if not log.exists():
        return float("nan")
    found = STARTUP.search(log.read_text(errors="replace"))
    return float(found.group(1)) if found else float("nan")


def stage_table(results: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(results.glob("*/benchmarks/**/*.tsv")):
        experiment = tsv.relative_to(results).parts[0]
        if experiment == "cache":
            continue
        stage = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        rows.append((experiment, stage, tsv, results / experiment / "logs" / tsv.relative_to(
            results / experiment / "benchmarks").with_suffix(".log")))
    for tsv in sorted(results.glob("cache/*/*/*benchmark.tsv")):
        log = tsv.with_name(tsv.name.replace(".benchmark.tsv", ".log"))
        rows.append(("cache", tsv.relative_to(results / "cache").parts[0], tsv, log))
    records = []
    for experiment, stage, tsv, log in rows:
        b = pd.read_csv(tsv, sep="\t")
        records.append({"experiment": experiment, "stage": stage, "s": float(b["s"].iloc[0]),
                        "startup_s": _startup(log), "max_rss_MiB": float(b["max_rss"].iloc[0])})
    if not records:
        raise SystemExit(f"no finished job under {results}")
    df = pd.DataFrame(records)
    table = df.groupby(["experiment", "stage"], sort=False).agg(
        jobs=("s", "size"), total_s=("s", "sum"), max_s=("s", "max"), startup_s=("startup_s", "sum"),
        peak_rss_MiB=("max_rss_MiB", "max"))
    table["startup_share"] = table["startup_s"] / table["total_s"]
    return table


if __name__ == "__main__":
    table = stage_table(Path(sys.argv[1]))
    print(table.round(2).to_string())
    print(f"{int(table['jobs'].sum())} jobs; sum of job wall times: {table['total_s'].sum():.1f} s, of which "
          f"start-up (interpreter and imports) {table['startup_s'].sum():.1f} s")
