"""Per-stage wall time and peak memory of a finished pipeline run, from the `benchmark:`
files every rule writes: results/<experiment>/benchmarks/**.tsv for an experiment's own
jobs, and results/cache/<step>/<key>/*.tsv for the shared steps (listed as `cache`).

    python bench/stage_times.py results
"""
import sys
from pathlib import Path

import pandas as pd


def stage_table(results: Path) -> pd.DataFrame:
    rows = []
    for tsv in sorted(results.glob("*/benchmarks/**/*.tsv")):
        experiment = tsv.relative_to(results).parts[0]
        stage = tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem
        rows.append((experiment, stage, tsv))
    rows += [("cache", tsv.relative_to(results / "cache").parts[0], tsv)
             for tsv in sorted(results.glob("cache/*/*/*.tsv"))]
    records = []
    for experiment, stage, tsv in rows:
        b = pd.read_csv(tsv, sep="\t")
        records.append({"experiment": experiment, "stage": stage, "s": float(b["s"].iloc[0]),
                        "max_rss_MiB": float(b["max_rss"].iloc[0])})
    if not records:
        raise SystemExit(f"no finished job under {results}")
    df = pd.DataFrame(records)
    return df.groupby(["experiment", "stage"], sort=False).agg(
        jobs=("s", "size"), total_s=("s", "sum"), max_s=("s", "max"), peak_rss_MiB=("max_rss_MiB", "max"))


if __name__ == "__main__":
    table = stage_table(Path(sys.argv[1]))
    print(table.round(1).to_string())
    print(f"{int(table['jobs'].sum())} jobs; sum of job wall times: {table['total_s'].sum():.1f} s")
