"""Per-stage benchmark of the exact solvers (Model 2.2, d = 32, five teachers of one draw).

    python bench/benchmark.py --backend numpy --sizes 2048 8192 16384 --eigh-max 8192
    python bench/benchmark.py --backend cupy --sizes 16384 32768 65536 131072 --eigh-max 32768

Each size runs in its own process, so peak memory is that size's alone. Stages: feature
draw, kernel matrix, dense eigh + curves (up to --eigh-max), Lanczos on the stored kernel,
Lanczos matrix-free (kernel tiles rebuilt each step), teacher fits, and the agreement of
Lanczos with eigh. Prints a markdown table and appends it, with the machine and library
versions, to --out. `--sampled` adds the hand-written alternative: sampled-data gradient
descent run until one teacher's best loss has a 1% standard error, against the exact path.
"""
from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402

TEACHERS = (16, 32, 64, 128, 256)
# FP64 operations per kernel element (clip, sqrt, acos, products): acos alone is a
# range-reduced polynomial of ~20 fused operations in CUDA's libdevice.
KAPPA_FLOPS = 40
# Batch of the sampled-data comparison: the held-out sets, not the batch, set its standard
# error at batch >= 256 (measured, README "Validation"), so the cheapest batch is the fair one.
SAMPLED_BATCH = 256


def arithmetic_floor_s(M: int, d: int, lanes: int, steps: int, gemm_tflops: float, vector_tflops: float) -> float:
    """Seconds a matrix-free Lanczos run cannot beat on a device with these FP64 peaks: each
    step rebuilds all M^2 kernel entries (inner products, 2 M^2 d, on the matrix units; the
    kernel function, KAPPA_FLOPS M^2, on the vector units) and multiplies them by the lane
    block (2 M^2 lanes). Memory traffic is not counted: tiles are consumed where they are built."""
    gemm = 2.0 * M * M * (d + lanes) / (gemm_tflops * 1e12)
    vector = KAPPA_FLOPS * M * M / (vector_tflops * 1e12)
    return steps * (gemm + vector)


def traffic_floor_s(M: int, steps: int, bandwidth_tbps: float) -> float:
    """Seconds the matrix-free run's memory traffic takes at the device's peak bandwidth:
    each step the inner products write every tile (8 bytes an element) and the fused kernel
    function and product read it once (8 more). A fully fused kernel (inner products
    included) would move nothing of that size; ours keeps the inner products on cuBLAS."""
    return steps * 16.0 * M * M / (bandwidth_tbps * 1e12)


def _peak_host_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _one_size(backend: str, M: int, eigh_max: int, matrix_free_max: int, peaks, bandwidth, tiles: bool,
              queue, fused_inner: bool = False) -> None:
    from rfw2s import backend as backends
    from rfw2s.curves import exact_curves, stored_kernel
    from rfw2s.models import relu_sphere
    from rfw2s.seeding import seed_sequence
    from rfw2s.solve import fit_teacher
    from rfw2s.spectral import GradientFlow

    be = backends.resolve(backend)
    pool = be.xp.get_default_memory_pool() if be.name == "cupy" else None
    model = relu_sphere(32)
    ts = GradientFlow(np.geomspace(1e2, 1e8, 200))
    importlib.import_module("rfw2s.models.relu.kernel").FUSED_INNER_PRODUCTS = fused_inner
    row = {"backend": be.name, "device": be.device, "M_ST": M,
           "product": "tiles" if tiles else "fused inner" if fused_inner else "model's"}

    def timed(name, fn):
        be.synchronize()
        start = time.perf_counter()
        out = fn()
        be.synchronize()
        row[name] = time.perf_counter() - start
        return out

    W = timed("draw_s", lambda: model.sample_features(seed_sequence(0, "student", M, 0), M))
    fits = timed("teachers_s", lambda: [
        (U, fit_teacher(model, U, backend=be).coef)
        for U in (model.sample_features(seed_sequence(0, "teacher", m, 0), m) for m in TEACHERS)])
    Wx = be.asarray(W)
    stored = 8 * M * M <= _memory_budget(be) / 3  # kernel, plus room for eigh of it
    reference = None
    if stored:
        G = timed("kernel_s", lambda: stored_kernel(model, Wx))  # as a curve job builds it
        lanczos = timed("lanczos_s", lambda: exact_curves(model, W, fits, ts, backend=be, operator="cached",
                                                          kernel=G))
        row["lanczos_steps"] = lanczos.steps
        if M <= eigh_max:
            dense = timed("eigh_curves_s", lambda: exact_curves(model, W, fits, ts, backend=be, operator="eigh"))
            reference = dense.losses
            row["lanczos_vs_eigh"] = float(np.max(np.abs(lanczos.losses / reference - 1)))
        del G
    if M <= matrix_free_max:
        # --tiles: the matrix-free product by plain tiles, not the model's fused product.
        free = timed("matrix_free_s", lambda: exact_curves(_Unfused(model) if tiles else model, W, fits, ts,
                                                           backend=be, operator="tiled"))
        row["matrix_free_steps"] = free.steps
        if peaks is not None:
            row["floor_s"] = arithmetic_floor_s(M, model.d, len(TEACHERS) + 1, free.steps, *peaks)
            row["over_floor"] = row["matrix_free_s"] / row["floor_s"]
        if bandwidth is not None:
            row["traffic_floor_s"] = traffic_floor_s(M, free.steps, bandwidth)
        if reference is not None:
            row["matrix_free_vs_eigh"] = float(np.max(np.abs(free.losses / reference - 1)))
    row["peak_host_MiB"] = _peak_host_mib()
    if pool is not None:
        row["peak_gpu_MiB"] = pool.total_bytes() / 2**20  # the pool keeps what it ever held
    queue.put(row)


def _memory_budget(be) -> float:
    if be.name == "cupy":
        return float(be.xp.cuda.Device().mem_info[1])
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


class _Unfused:
    """A model without its fused product (``gram_product_into``): tiles, then a product."""

    def __init__(self, model):
        self._model = model

    def __getattr__(self, name):
        if name == "gram_product_into":
            raise AttributeError(name)
        return getattr(self._model, name)


def _launch_shape(shape: str):
    """``ROWSxBLOCKxWARPS`` -> the fused product's launch constants, set in its module (the
    compiled kernels are dropped: ROWS is part of the source)."""
    module = importlib.import_module("rfw2s.models.relu.kernel")
    rows, block, warps = (int(v) for v in shape.split("x"))
    module.PRODUCT_ROWS, module.PRODUCT_BLOCK, module.PRODUCT_WARPS = rows, block, warps
    module._CUDA_KERNELS.clear()


def _product_rows(backend: str, sizes, shapes=(), repeats: int = 3) -> list[dict]:
    """Seconds per matrix-free product ``H @ X`` (6 vectors, one Lanczos step's access to
    ``H``), with the model's fused product (at its launch shape, and at each of ``shapes``)
    and by plain tiles, and how far they differ."""
    from rfw2s.backend import as_backend, to_numpy
    from rfw2s.curves import tiled_matvec
    from rfw2s.models import relu_sphere
    from rfw2s.seeding import seed_sequence

    module = importlib.import_module("rfw2s.models.relu.kernel")
    be = as_backend(backend)
    model = relu_sphere(32)
    default = f"{module.PRODUCT_ROWS}x{module.PRODUCT_BLOCK}x{module.PRODUCT_WARPS}"
    variants = [("tiles", _Unfused(model), None)] + [
        (f"fused_{shape}", model, shape) for shape in dict.fromkeys([default, *shapes])] + [
        ("fused_inner", model, "inner")]
    rows = []
    for M in sizes:
        W = be.asarray(model.sample_features(seed_sequence(0, "student", M, 0), M))
        X = be.asarray(np.random.default_rng(0).standard_normal((M, 6)))
        row, products = {"backend": be.name, "M_ST": M}, {}
        for name, how, shape in variants:
            module.FUSED_INNER_PRODUCTS = shape == "inner"
            if shape not in (None, "inner"):
                _launch_shape(shape)
            matvec = tiled_matvec(how, W, M)
            products[name] = to_numpy(matvec(X))  # compiles and warms up
            be.synchronize()
            start = time.perf_counter()
            for _ in range(repeats):
                matvec(X)
            be.synchronize()
            row[f"{name}_s_per_step"] = (time.perf_counter() - start) / repeats
            row[f"{name}_vs_tiles"] = float(np.max(np.abs(products[name] - products["tiles"]))
                                            / np.max(np.abs(products["tiles"])))
        del row["tiles_vs_tiles"]
        module.FUSED_INNER_PRODUCTS = False
        _launch_shape(default)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def _dgemm_peak_flops(n: int = 4096, repeats: int = 3) -> float:
    """This machine's FP64 rate on a large square product, every BLAS thread: the arithmetic
    floor's peak, measured in the same process as what it bounds."""
    A = np.random.default_rng(0).standard_normal((n, n))
    A @ A
    start = time.perf_counter()
    for _ in range(repeats):
        A @ A
    return 2 * n**3 * repeats / (time.perf_counter() - start)


def _symmetric_rows(sizes, widths=(2, 6, 8, 16), repeats: int = 9) -> list[dict]:
    """The CPU's symmetric product over a stored kernel (``dense_matvec`` on ``stored_kernel``)
    against its floors, in this process, for each size and block width: one streaming pass
    over the same stored bytes (each panel times the block once, on every BLAS thread), and
    its arithmetic, ``2 M^2 p`` operations at this machine's large-product rate; and the BLAS
    route the product takes where the compiled kernel is not built."""
    from rfw2s import curves
    from rfw2s.curves import SYMMETRIC_BLOCK, _cache_bytes, chunk_columns, dense_matvec, stored_kernel
    from rfw2s.models import relu_sphere
    from rfw2s.seeding import seed_sequence

    model = relu_sphere(32)
    peak = _dgemm_peak_flops()
    rows = []
    for M in sizes:
        W = model.sample_features(seed_sequence(0, "student", M, 0), M)
        start = time.perf_counter()
        G = stored_kernel(model, W)
        build = time.perf_counter() - start
        stored = sum(p.nbytes for p in G.panels)
        matvec = dense_matvec(G, M)
        compiled, loader = curves.panel_kernel(), curves.panel_kernel
        curves.panel_kernel = lambda: None  # the product as an install without the kernel runs it
        blas_matvec = dense_matvec(G, M)
        curves.panel_kernel = loader
        for p in widths:
            X = np.random.default_rng(p).standard_normal((M, p))

            def floor():
                return [panel @ X[r0:] for panel, r0 in zip(G.panels, G.edges)]

            routes = (("floor", floor), ("symmetric", lambda: matvec(X)), ("blas", lambda: blas_matvec(X)))
            for _, fn in routes:  # warm up (pages, thread pools)
                fn()
            # The fastest of each (on a shared machine noise only adds time), not interleaved:
            # BLAS's idle threads spin for a while after the pass and would slow the product.
            times = {name: np.inf for name, _ in routes}
            for name, fn in routes:
                for _ in range(repeats):
                    start = time.perf_counter()
                    fn()
                    times[name] = min(times[name], time.perf_counter() - start)
            row = {"M_ST": M, "vectors": p, "kernel_build_s": build, "floor_s": times["floor"],
                   "symmetric_s": times["symmetric"], "over_floor": times["symmetric"] / times["floor"],
                   "route": "compiled" if compiled is not None else "blas",
                   "blas_s": times["blas"], "blas_over_floor": times["blas"] / times["floor"],
                   "floor_GBps": stored / times["floor"] / 1e9,
                   # Each stored element serves two products: 2 M^2 p operations, twice the pass's.
                   "arithmetic_floor_s": 2 * M * M * p / peak,
                   "over_max_floor": times["symmetric"] / max(times["floor"], 2 * M * M * p / peak),
                   "dgemm_GFLOPs": peak / 1e9, "chunk_columns": chunk_columns(SYMMETRIC_BLOCK),
                   "L2_KiB": _cache_bytes(2, 0) // 1024}
            rows.append(row)
            print(json.dumps(row), flush=True)
        del G, matvec, blas_matvec
    return rows


def _sampled_versus_exact(backend: str, M: int) -> dict:
    """Seconds for sampled-data GD to estimate one teacher's best loss to 1% (standard error),
    against the exact path (kernel + Lanczos) for the same teacher, same machine."""
    from rfw2s.backend import as_backend
    from rfw2s.curves import exact_curves, stored_kernel
    from rfw2s.models import relu_sphere
    from rfw2s.sample import train_student
    from rfw2s.seeding import seed_sequence
    from rfw2s.solve import fit_teacher
    from rfw2s.spectral import GradientFlow

    model = relu_sphere(32)
    W = model.sample_features(seed_sequence(0, "student", M, 0), M)
    U = model.sample_features(seed_sequence(0, "teacher", 64, 0), 64)
    fit = fit_teacher(model, U)
    ts = np.geomspace(1e2, 1e8, 200)
    start = time.perf_counter()  # the pipeline's exact path: kernel, then Lanczos on it
    kernel = stored_kernel(model, as_backend(backend).asarray(W))
    exact = exact_curves(model, W, [(U, fit.coef)], GradientFlow(ts), backend=backend, operator="cached",
                         kernel=kernel).losses[0]
    exact_s = time.perf_counter() - start
    t_best = ts[np.argmin(exact)]
    # At least 4 runs: fewer give no credible standard error.
    runs, start = 4, time.perf_counter()
    while True:
        sampled = train_student(model, W, U, fit.coef, [t_best], runs=runs, batch=SAMPLED_BATCH, backend=backend)
        if sampled.se[0] <= 0.01 * sampled.losses[0] or runs >= 64:
            break
        runs *= 2
    sampled_s = time.perf_counter() - start
    return {"M_ST": M, "exact_s": exact_s, "sampled_s": sampled_s, "runs": runs,
            "relative_se": float(sampled.se[0] / sampled.losses[0]), "batch": SAMPLED_BATCH,
            "sampled_vs_exact": float(sampled.losses[0] / exact.min() - 1), "ratio": sampled_s / exact_s}


COLUMNS = ["backend", "M_ST", "product", "draw_s", "teachers_s", "kernel_s", "eigh_curves_s", "lanczos_s", "lanczos_steps",
           "lanczos_vs_eigh", "matrix_free_s", "matrix_free_steps", "matrix_free_vs_eigh", "floor_s", "over_floor",
           "traffic_floor_s", "peak_host_MiB", "peak_gpu_MiB"]


def _markdown(rows, columns=COLUMNS) -> str:
    cols = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r.get(c, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    p.add_argument("--sizes", type=int, nargs="*", default=[2048, 8192, 16384])
    p.add_argument("--eigh-max", type=int, default=8192, help="largest size for the dense eigh reference")
    p.add_argument("--matrix-free-max", type=int, default=16384, help="largest size run matrix-free")
    p.add_argument("--sampled", type=int, default=0, help="M_ST for the sampled-vs-exact comparison (0: skip)")
    p.add_argument("--peak-tflops", type=float, nargs=2, metavar=("MATRIX", "VECTOR"),
                   help="the device's FP64 peaks (matrix units, vector units) for the matrix-free arithmetic "
                        "floor, e.g. 67 34 for an H100/H200 SXM (datasheet)")
    p.add_argument("--peak-bandwidth", type=float, metavar="TB/s",
                   help="the device's memory bandwidth for the matrix-free traffic floor, e.g. 4.8 for an H200")
    p.add_argument("--products", type=int, nargs="*", default=[],
                   help="sizes at which to time one matrix-free product, fused and by plain tiles")
    p.add_argument("--tiles", action="store_true",
                   help="matrix-free runs multiply by plain tiles instead of the model's fused product")
    p.add_argument("--fused-inner", action="store_true",
                   help="matrix-free runs by the kernel with the inner products inside (rfw2s.models.relu.kernel."
                        "FUSED_INNER_PRODUCTS)")
    p.add_argument("--product-shapes", nargs="*", default=[], metavar="ROWSxBLOCKxWARPS",
                   help="launch shapes of the fused product to time besides its own (with --products)")
    p.add_argument("--symmetric", type=int, nargs="*", default=[],
                   help="sizes at which to time the CPU's symmetric product against one streaming pass")
    p.add_argument("--out", default=str(Path(__file__).with_name("RESULTS.md")))
    a = p.parse_args()

    from rfw2s import backend as backends

    ctx = mp.get_context("spawn")
    rows = []
    for M in a.sizes:
        queue = ctx.Queue()
        proc = ctx.Process(target=_one_size, args=(a.backend, M, a.eigh_max, a.matrix_free_max, a.peak_tflops,
                                                          a.peak_bandwidth, a.tiles, queue, a.fused_inner))
        proc.start()
        proc.join()
        if proc.exitcode != 0:
            rows.append({"backend": a.backend, "M_ST": M, "draw_s": f"failed (exit {proc.exitcode})"})
            continue
        rows.append(queue.get())
        print(json.dumps(rows[-1]), flush=True)
    device = rows[0].get("device", "?") if rows else backends.resolve(a.backend).device
    report = [f"### {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC — {a.backend} on {device}, "
              f"{os.cpu_count()} CPU cores",
              "", f"`{' '.join(sys.argv)}`; versions: {json.dumps(backends.versions())}", ""]
    report += [_markdown(rows), ""] if rows else []
    if a.peak_tflops:
        report += [f"floor_s: the arithmetic floor of the matrix-free run (bench/benchmark.py "
                   f"arithmetic_floor_s) at FP64 peaks of {a.peak_tflops[0]:g} (matrix) and {a.peak_tflops[1]:g} "
                   f"(vector) TFLOP/s, {KAPPA_FLOPS} operations per kernel element; over_floor = measured / floor.", ""]
    if a.peak_bandwidth:
        report += [f"traffic_floor_s: the matrix-free run's tile traffic (16 bytes an element a step, "
                   f"bench/benchmark.py traffic_floor_s) at {a.peak_bandwidth:g} TB/s.", ""]
    if a.products:
        product_rows = _product_rows(a.backend, a.products, a.product_shapes)
        report += ["One matrix-free product `H @ X` (6 vectors): the model's fused kernel function and "
                   "product (launch shape ROWSxBLOCKxWARPS: rows per thread, threads per block, warps per "
                   "tile) against plain tiles (inner products, kernel function in place, product).", "",
                   _markdown(product_rows, list(product_rows[0])), ""]
    if a.symmetric:
        symmetric = _symmetric_rows(a.symmetric)
        report += ["The CPU's symmetric product `H @ X` over the stored upper panels against one streaming "
                   "pass over the same bytes (each panel times the block once), same process:", "",
                   _markdown(symmetric, list(symmetric[0])), ""]
    if a.sampled:
        s = _sampled_versus_exact(a.backend, a.sampled)
        print(json.dumps(s), flush=True)
        report += [f"Sampled-data gradient descent vs exact (M_ST = {s['M_ST']}, M_TE = 64, best t): "
                   f"exact {s['exact_s']:.2f} s; sampled {s['sampled_s']:.1f} s for {s['runs']} runs (batch {s['batch']}) to a "
                   f"{100 * s['relative_se']:.2f}% standard error (its estimate is off the exact best loss by "
                   f"{100 * s['sampled_vs_exact']:+.2f}%): **{s['ratio']:.0f}x** slower.", ""]
    text = "\n".join(report)
    print(text)
    with open(a.out, "a") as fh:
        fh.write("\n" + text)


if __name__ == "__main__":
    main()
