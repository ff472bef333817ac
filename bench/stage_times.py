"""Per-stage wall time and peak memory of a finished pipeline run, from the `benchmark:`
files every rule writes: results/<experiment>/benchmarks/<rule>/*.tsv and, for the shared
student cache, results/cache/<student>/benchmarks/<rule>_r<R>.tsv (all students in the
cache: run it on a results folder made by one experiment's run for that experiment alone).

    python bench/stage_times.py results/fig2
"""
import sys
from pathlib import Path

import pandas as pd


def stage_table(folder: Path) -> pd.DataFrame:
    files = [(tsv.parent.name if tsv.parent.name != "benchmarks" else tsv.stem, tsv)
             for tsv in sorted((folder / "benchmarks").rglob("*.tsv"))]
    files += [(tsv.stem.rsplit("_r", 1)[0], tsv) for tsv in sorted((folder.parent / "cache").glob("*/benchmarks/*.tsv"))]
    rows = []
    for stage, tsv in files:
        b = pd.read_csv(tsv, sep="\t")
        rows.append({"stage": stage, "s": float(b["s"].iloc[0]), "max_rss_MiB": float(b["max_rss"].iloc[0])})
    df = pd.DataFrame(rows)
    return df.groupby("stage", sort=False).agg(jobs=("s", "size"), total_s=("s", "sum"), max_s=("s", "max"),
                                               peak_rss_MiB=("max_rss_MiB", "max"))


if __name__ == "__main__":
    table = stage_table(Path(sys.argv[1]))
    print(table.round(1).to_string())
    print(f"sum of job wall times: {table['total_s'].sum():.0f} s")
