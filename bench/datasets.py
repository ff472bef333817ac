"""The dual route's curve job on a real dataset against its floor: digits (N = 1797 rows, 64
pixels on the sphere, one-hot over 10 classes), five teachers and the strong ceiling, gradient
flow at 200 times, accuracies included, as one curve job of workflow/configs/datasets.yaml runs it.

    python bench/datasets.py --backend numpy --sizes 16384 131072

The floor, measured in the same process: forming the rows' kernel K = Phi Phi^T / (N M) at this
machine's rate for that product (a symmetric product of an N x b block by its transpose, b the
route's block of feature columns, timed alone and scaled to M / b blocks; N^2 M multiply-adds),
plus one N x N eigendecomposition. Each size runs in its own process. Prints a markdown table,
row by row, and appends it with the machine and versions to --out.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

TEACHERS = (16, 32, 64, 128, 256)
COLUMNS = ["backend", "N", "M_ST", "dual_s", "form_floor_s", "eigh_s", "floor_s", "over_floor", "syrk_GFLOPs",
           "peak_host_MiB"]


def _one(backend: str, M: int, queue) -> None:
    import resource

    from sklearn.datasets import load_digits

    from rfw2s import backend as backends
    from rfw2s.dense import spectrum_of_gram
    from rfw2s.dual import BLOCK_BYTES, dual_curves
    from rfw2s.models import dataset
    from rfw2s.seeding import draw
    from rfw2s.solve import fit_teacher
    from rfw2s.spectral import GradientFlow

    be = backends.resolve(backend)
    xp = be.xp
    X, y = load_digits(return_X_y=True)
    model = dataset(X, np.eye(10)[y], classes="one_hot")
    N = model.n_rows
    rule = GradientFlow(np.geomspace(1e1, 1e9, 200))
    W = draw(model, 0, "student", M, 0)
    teachers = [(U, fit_teacher(model, U).coef) for U in (draw(model, 0, "teacher", m, 0) for m in TEACHERS)]
    row = {"backend": be.name, "N": N, "M_ST": M}

    def timed(fn):
        be.synchronize()
        start = time.perf_counter()
        out = fn()
        be.synchronize()
        return out, time.perf_counter() - start

    curves, row["dual_s"] = timed(lambda: dual_curves(model, W, teachers, rule, backend=be))
    assert np.all(np.isfinite(curves.losses)) and curves.accuracy is not None
    # The floor's pieces: the kernel's symmetric products at the rate one block's takes, and eigh.
    width = max(1, BLOCK_BYTES // (8 * N))
    phi = xp.maximum(xp.asarray(model.rows) @ be.asarray(W[:width]).T, 0.0)
    timed(lambda: phi @ phi.T)  # warm
    _, block_s = timed(lambda: phi @ phi.T)
    row["form_floor_s"] = block_s * M / width
    row["syrk_GFLOPs"] = N * N * width / block_s / 1e9
    K = xp.asarray(np.cov(np.random.default_rng(0).standard_normal((N, N + 10)))) / N
    _, row["eigh_s"] = timed(lambda: spectrum_of_gram(K, be, divisor=1.0))
    row["floor_s"] = row["form_floor_s"] + row["eigh_s"]
    row["over_floor"] = row["dual_s"] / row["floor_s"]
    row["peak_host_MiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[16384, 131072])
    parser.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    a = parser.parse_args()
    from rfw2s.backend import versions

    header = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    print(header, flush=True)
    lines = []
    for M in a.sizes:
        queue = mp.get_context("spawn").Queue()
        process = mp.get_context("spawn").Process(target=_one, args=(a.backend, M, queue))
        process.start()
        row = queue.get()
        process.join()
        line = "| " + " | ".join(f"{row[c]:.3g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) + " |"
        print(line, flush=True)
        lines.append(line)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    with open(a.out, "a") as fh:
        fh.write(f"\n### {stamp} — the dual route on digits, {a.backend}, {cores} CPU cores\n\n"
                 f"`bench/datasets.py --backend {a.backend} --sizes {' '.join(map(str, a.sizes))}`; versions: "
                 f"{json.dumps(versions())}\n\n{header}\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
