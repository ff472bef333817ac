"""What the student on finite samples costs against the population curves (Model 2.2, d = 32,
five teachers of one draw, gradient flow at 200 times), by the Krylov route and the dense one.

    python bench/samples.py --backend numpy --sizes 4096 --n 8192
    python bench/samples.py --backend cupy --sizes 4096 16384 --n 8192 32768

Each (M_ST, n) runs in its own process (peak memory is its own). Reported: the population
curves (kernel built in memory, Lanczos), the sample curves by Krylov (Lanczos on the sample
kernel, one pass over the sample's features a step) and by the thin SVD (the dense reference,
up to --svd-max), their agreement, and the ratio of the Krylov route to the population's;
where the CPU forms the sample kernel, forming it alone (the route's floor) against the
population's time.
Prints a markdown table and appends it, with the machine and versions, to --out.
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


def _one(backend: str, M: int, n: int, svd_max: int, queue) -> None:
    from rfw2s import backend as backends
    from rfw2s.curves import exact_curves
    from rfw2s.finite_sample import FORM_KERNEL_MAX_M, draw_samples, formed_sample_kernel, sample_curves
    from rfw2s.models import relu_sphere
    from rfw2s.seeding import draw
    from rfw2s.solve import fit_teacher
    from rfw2s.spectral import GradientFlow

    be = backends.resolve(backend)
    model = relu_sphere(32)
    rule = GradientFlow(np.geomspace(1e2, 1e8, 200))
    W = draw(model, 0, "student", M, 0)
    teachers = [(U, fit_teacher(model, U).coef) for U in (draw(model, 0, "teacher", m, 0) for m in TEACHERS)]
    X = draw_samples(model, 0, n, 0)
    row = {"backend": be.name, "M_ST": M, "n": n}

    def timed(name, fn):
        be.synchronize()
        start = time.perf_counter()
        out = fn()
        be.synchronize()
        row[name] = time.perf_counter() - start
        return out

    population = timed("population_s", lambda: exact_curves(model, W, teachers, rule, operator="stored", backend=be))
    row["population_steps"] = population.steps
    krylov = timed("krylov_s", lambda: sample_curves(model, W, teachers, rule, X, operator="krylov", backend=be))
    row["krylov_steps"] = krylov.steps
    row["krylov_over_population"] = row["krylov_s"] / row["population_s"]
    if M <= FORM_KERNEL_MAX_M and n >= M:
        # The floor of the formed route, in the same process: forming the sample kernel alone.
        Y = np.stack([model.features(X, U) @ coef for U, coef in teachers], axis=1)
        timed("form_kernel_s", lambda: formed_sample_kernel(model, X, W, Y))
        row["form_over_population"] = row["form_kernel_s"] / row["population_s"]
    if M <= svd_max:
        dense = timed("svd_s", lambda: sample_curves(model, W, teachers, rule, X, operator="svd", backend=be))
        row["krylov_vs_svd"] = float(np.max(np.abs(krylov.losses / dense.losses - 1)))
    queue.put(row)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    p.add_argument("--sizes", type=int, nargs="+", default=[4096])
    p.add_argument("--n", type=int, nargs="+", default=[8192])
    p.add_argument("--svd-max", type=int, default=8192, help="largest M_ST for the dense reference")
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    a = p.parse_args()

    from rfw2s import backend as backends

    ctx = mp.get_context("spawn")
    rows = []
    for M in a.sizes:
        for n in a.n:
            queue = ctx.Queue()
            proc = ctx.Process(target=_one, args=(a.backend, M, n, a.svd_max, queue))
            proc.start()
            proc.join()
            rows.append(queue.get() if proc.exitcode == 0 else {"M_ST": M, "n": n, "population_s": "failed"})
            print(json.dumps(rows[-1]), flush=True)
    columns = ["backend", "M_ST", "n", "population_s", "population_steps", "krylov_s", "krylov_steps",
               "krylov_over_population", "form_kernel_s", "form_over_population", "svd_s", "krylov_vs_svd"]
    columns = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r.get(c), float) else str(r.get(c, ""))
                                       for c in columns) + " |")
    device = backends.resolve(a.backend).device
    text = "\n".join([f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — finite samples, {a.backend} on "
                      f"{device}, {os.cpu_count()} CPU cores", "", f"`{' '.join(sys.argv)}`", ""] + lines + [""])
    print(text)
    with open(a.out, "a") as fh:
        fh.write("\n" + text)


if __name__ == "__main__":
    main()
