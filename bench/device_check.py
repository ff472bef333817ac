"""The Python stages of ``bench/device_check.sh``: every call into the library the device check
makes is in this file (the public functions ``rfw2s.curves.exact_curves``,
``rfw2s.finite_sample.sample_curves``, ``rfw2s.solve.*`` and the ReLU model's kernels), so a
change of the library's interface is mended here alone.

    python bench/device_check.py STAGE [--rows FILE] [--profile device|tiny]

Stages: versions, kernels, linalg, curves, samples, products, sanitize (tiny launches of every
CUDA kernel, for compute-sanitizer). Each prints its rows as JSON and appends them to --rows
as they are measured (a stage stopped by its time cap keeps what it wrote), and ends with one
line ``KEY: ...``, the numbers of the final table. ``--profile tiny`` runs the same code at
sizes the emulated CuPy (tests/emulated_cupy.py) takes in seconds: tests/test_device_check.py
runs every stage so before a GPU does.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _path in (ROOT / "src", HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import numpy as np  # noqa: E402

from benchmark import KAPPA_FLOPS, TEACHERS, _Unfused  # noqa: E402

STAGES = ("versions", "kernels", "linalg", "curves", "samples", "products", "sanitize")
# Vendor figures (NVIDIA's datasheets for the SXM parts; docs/performance.md, GPU): FP64 on the
# ordinary pipes and on the tensor cores (TFLOP/s), and memory bandwidth (TB/s).
PEAKS = {"H100": (34.0, 67.0, 3.35), "H200": (34.0, 67.0, 4.8)}
# Kernel shapes checked against NumPy: the feature dimensions and block widths at the edges
# (1 and many columns, odd widths, one and two coordinate chunks, d up to 128), besides the
# shipped configs' own (shipped_shapes); REPORT_DIMS are compiled (nvcc -Xptxas -v): either side of a
# coordinate chunk (FUSED_K_CHUNK = 32), 46 (the first the fused kernel's shared memory refused before).
KERNEL_DIMS = (2, 3, 32, 33, 46, 64, 128)
REPORT_DIMS = (2, 3, 31, 32, 33, 46, 64, 128)
KERNEL_LANES = (1, 2, 6, 7, 8, 9, 16, 17, 31, 32, 33, 60, 120)
# Sizes of each stage: on the device, and on the emulated CuPy (tests).
PROFILES = {
    "device": {"product_tile": (37, 4099), "fused_tile": (1000, 4099), "shipped": True,
               "shipped_tile": (2048, 16384), "shipped_fused": (4096, 16384), "ptxas": True,
               "dims": KERNEL_DIMS, "lanes": KERNEL_LANES, "fused_lanes": (6, 9),
               "eigh_n": 2048, "svd": (4096, 1024), "curves_M": 32768, "cross_M": 4096,
               "samples": (2048, 4096), "cross_samples": (1024, 2048), "products_M": 131072,
               "teachers": TEACHERS, "repeats": 2},
    "tiny": {"product_tile": (5, 70), "fused_tile": (70, 130), "shipped": False, "ptxas": False,
             "dims": (3, 40), "lanes": (1, 9, 33), "fused_lanes": (9,),
             "eigh_n": 40, "svd": (60, 20), "curves_M": 150, "cross_M": 100,
             "samples": (64, 128), "cross_samples": (48, 96), "products_M": 150,
             "teachers": (4, 8), "repeats": 1},
}
# Agreement required of the solvers' routes with one another (the solver's own tolerance).
CURVES_TOL = 1e-10
# A kernel against NumPy, relative to the sum of magnitudes (a few ulps of acos and sqrt).
KERNEL_TOL = 1e-13

log = logging.getLogger("rfw2s")


class Rows:
    """Rows printed and appended to a JSON-lines file as they come (each written at once)."""

    def __init__(self, stage: str, path: str | None):
        self.stage, self.path = stage, path

    def __call__(self, **row) -> dict:
        row = {"stage": self.stage, **row}
        text = json.dumps(row, default=_plain)
        print(text, flush=True)
        if self.path:
            with open(self.path, "a") as fh:
                fh.write(text + "\n")
        return row

    def key(self, text: str) -> None:
        """The stage's key numbers, for the final table: the last such line counts."""
        self(key=text)
        print(f"KEY: {text}", flush=True)


def _attempt(rows: Rows, failures: list, label: str, fn):
    """``fn()``, or ``None`` with a row saying why where it raises: one failing case does not
    hide the others from a run that may not come again."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - recorded, and the stage's key names it
        failures.append(label)
        rows(case=label, failed=f"{exc.__class__.__name__}: {exc}"[:800])
        traceback.print_exc()
        return None


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def device_peaks(name: str):
    """``(vector, tensor TFLOP/s, TB/s)`` of the device called ``name``, or ``None``."""
    return next((peaks for card, peaks in PEAKS.items() if card in name), None)


def product_floors(M: int, d: int, p: int, peaks) -> dict:
    """Seconds one matrix-free product ``H @ X`` (``M`` features of ``d`` coordinates, ``p``
    columns) cannot beat at the FP64 ``peaks`` (vector, tensor TFLOP/s; TB/s), by each way
    (docs/performance.md, GPU): every element costs its inner product (2 d flops), the kernel
    function (KAPPA_FLOPS, vector pipes only) and its share of the product (2 p flops).

    * ``fused``: everything on the ordinary FP64 pipes, no tile (the fused kernel);
    * ``tile_reading``: inner products by cuBLAS (tensor cores), kernel function and product
      on the vector pipes, each tile written once and read once (16 bytes an element);
    * ``plain_tiles``: both products by cuBLAS, kernel function in place (32 bytes an element);
    * ``ideal``: both products on the tensor cores, no traffic (no kernel of ours reaches it).
    Each way's floor is the larger of its arithmetic and its traffic."""
    vector, tensor, bandwidth = (peak * 1e12 for peak in peaks)
    elements = float(M) * M
    kappa = KAPPA_FLOPS * elements / vector
    return {"fused": (2 * d + 2 * p) * elements / vector + kappa,
            "tile_reading": max(2 * d * elements / tensor + (KAPPA_FLOPS + 2 * p) * elements / vector,
                                16 * elements / bandwidth),
            "plain_tiles": max((2 * d + 2 * p) * elements / tensor + kappa, 32 * elements / bandwidth),
            "ideal": (2 * d + 2 * p) * elements / tensor + kappa}


def shipped_shapes(config: Path = ROOT / "config.yaml") -> tuple[set, set]:
    """``(dims, lanes)`` the shipped config's ReLU experiments use: each ``d``; blocks of one
    teacher and of every teacher of a draw (plus the target), and a finite-sample check's
    (10 and 20 Lanczos steps of that block)."""
    import yaml

    dims, lanes = set(), set()
    for experiment in yaml.safe_load(config.read_text())["experiments"].values():
        if experiment.get("model") != "relu_sphere":
            continue
        dims.add(int(experiment["d"]))
        p = len(experiment["m_te"]) + 1
        lanes |= {2, p, 10 * p, 20 * p}
    return dims, lanes


# --- stages -------------------------------------------------------------------------
def _backend():
    from rfw2s import backend as backends

    return backends.resolve("cupy")


def _model(d: int = 32):
    from rfw2s.models import relu_sphere

    return relu_sphere(d)


def _problem(model, M: int, teachers):
    """A student draw of ``M`` and the fitted teachers of the shipped experiments (on NumPy)."""
    from rfw2s.seeding import draw
    from rfw2s.solve import fit_teacher

    W = draw(model, 0, "student", M, 0)
    fits = [(U, fit_teacher(model, U).coef) for U in (draw(model, 0, "teacher", m, 0) for m in teachers)]
    return W, fits


def _rule():
    from rfw2s.spectral import GradientFlow

    return GradientFlow(np.geomspace(1e2, 1e8, 200))  # the shipped fig2's grid


def _timed(be, fn):
    be.synchronize()
    start = time.perf_counter()
    out = fn()
    be.synchronize()
    return out, time.perf_counter() - start


def _relative(got, want) -> float:
    return float(np.max(np.abs(got / want - 1)))


def stage_versions(rows: Rows, profile: dict) -> None:
    from importlib import metadata

    info = {"python": platform.python_version(), "executable": sys.executable, "numpy": np.__version__}
    for name in ("cupy-cuda13x", "cupy-cuda12x", "cupy", "pandas", "pyarrow", "matplotlib", "snakemake", "jsonschema",
                 "pytest", "pyyaml", "threadpoolctl"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    be = _backend()
    cupy = be.xp
    info["cupy_module"] = cupy.__version__
    runtime = cupy.cuda.runtime
    info["cuda_runtime"] = runtime.runtimeGetVersion()
    if hasattr(runtime, "driverGetVersion"):
        info["cuda_driver"] = runtime.driverGetVersion()
    props = runtime.getDeviceProperties(0)
    info["device"] = be.device
    info["memory_GiB"] = round(props["totalGlobalMem"] / 2**30, 1)
    for key in ("multiProcessorCount", "major", "minor", "l2CacheSize", "sharedMemPerBlockOptin"):
        if key in props:
            info[key] = props[key]
    for command in (["nvcc", "--version"], ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                             "--format=csv,noheader"]):
        if shutil.which(command[0]):
            result = subprocess.run(command, capture_output=True, text=True)
            info[command[0]] = (result.stdout.strip().splitlines() or [""])[-1]
    rows(**info)
    rows.key(f"{info['device']}, {info['memory_GiB']} GiB; Python {info['python']}, CuPy {info['cupy_module']}, "
             f"CUDA runtime {info['cuda_runtime']} driver {info.get('cuda_driver', '?')}, NumPy {info['numpy']}")


def _attributes(key) -> dict:
    """Registers, local memory (spills) and static shared memory of a compiled raw kernel, as
    the driver reports them (the real CuPy; the emulation has none)."""
    from rfw2s.models.relu import kernel

    compiled = kernel._CUDA_KERNELS.get(key)
    attributes = getattr(compiled, "attributes", None) or {}
    return {"registers": attributes.get("num_regs"), "local_bytes": attributes.get("local_size_bytes"),
            "shared_bytes": attributes.get("shared_size_bytes")}


def _unit_rows(rng, n: int, d: int) -> np.ndarray:
    rows = rng.standard_normal((n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _kernel_error(got, K, X) -> float:
    return float(np.max(np.abs(got - K @ X) / (np.abs(K) @ np.abs(X))))


def _ptxas_rows(rows: Rows, dims, lanes, summary: dict) -> None:
    """nvcc's registers, spills and shared memory of every source at these shapes, as rows
    (written when nvcc is done, so a stage cut later keeps them), summed up in ``summary``."""
    from rfw2s.models.relu.kernel import cuda_sources, ptxas_usage

    try:
        usage = ptxas_usage(cuda_sources(dims, lanes))
    except Exception as exc:  # noqa: BLE001 - a report, not a check: say why and go on
        usage = {"nvcc": {"error": f"{exc.__class__.__name__}: {exc}"}}
    for name, numbers in sorted(usage.items()):
        rows(kernel=f"nvcc sm_90 {name}", **numbers)
    summary.update(sources=len(usage), errors=sum("error" in u for u in usage.values()),
                   spilled=sum(u.get("spill_stores", 0) + u.get("spill_loads", 0) for u in usage.values()),
                   registers=max(u.get("registers", 0) for u in usage.values()),
                   shared=max(u.get("shared", 0) for u in usage.values()))


def stage_kernels(rows: Rows, profile: dict) -> None:
    """Every CUDA kernel against NumPy at every shape, NaN propagation, and each compiled
    kernel's registers, spills and shared memory (from the driver, and from nvcc for sm_90).
    The most telling first: a stage cut by its cap keeps those."""
    from rfw2s.models.relu import kernel
    from rfw2s.models.relu.kernel import (fused_groups, kappa, kappa_fused_product_into, kappa_into,
                                          kappa_product_into)

    be = _backend()
    cupy = be.xp
    rng = np.random.default_rng(0)
    shipped_dims, shipped_lanes = shipped_shapes()
    report: dict = {}
    reporter = None
    if profile["ptxas"] and shutil.which("nvcc"):  # on the CPUs while the GPU runs the checks
        reporter = threading.Thread(target=_ptxas_rows, args=(rows, sorted(set(REPORT_DIMS) | shipped_dims),
                                                               sorted(set(KERNEL_LANES) | shipped_lanes), report))
        reporter.start()
    worst, failures, count = 0.0, [], 0

    def check(name, got, want_K, X, **extra):
        nonlocal worst, count
        error = _kernel_error(got, want_K, X)
        worst, count = max(worst, error), count + 1
        if not error < KERNEL_TOL:
            failures.append(name)
        rows(kernel=name, error=error, **extra)

    def nan_check(name, got, row, **extra):
        ok = bool(np.all(np.isnan(got[row])) and np.all(np.isfinite(np.delete(got, row, axis=0))))
        failures.extend([] if ok else [name])
        rows(kernel=name, nan_kept=ok, **extra)

    def product(r, m, p):
        T = rng.uniform(-1.05, 1.05, (r, m))
        X = rng.standard_normal((m, p))
        out = cupy.empty((r, p))
        got, seconds = _timed(be, lambda: kappa_product_into(cupy.asarray(T), cupy.asarray(X), 32, out).get())
        route = "kernel" if p <= kernel.PRODUCT_MAX_LANES else "kappa in place + cuBLAS"
        check(f"product {r}x{m}x{p}", got, kappa(T, 32), X, rows=r, M=m, lanes=p, route=route, seconds=seconds,
              **_attributes(("product", p)))

    def fused(r, m, d, p):
        A, B = _unit_rows(rng, r, d), _unit_rows(rng, m, d)
        X = rng.standard_normal((m, p))
        out = cupy.empty((r, p))
        got, seconds = _timed(be, lambda: kappa_fused_product_into(cupy.asarray(A), cupy.asarray(B), cupy.asarray(X),
                                                                   d, out).get())
        group, groups = fused_groups(p)
        route = "fused" if groups <= kernel.FUSED_MAX_GROUPS else "tile path"
        check(f"fused {r}x{m} d={d} p={p}", got, kappa(A @ B.T, d), X, rows=r, M=m, d=d, lanes=p, groups=groups,
              route=route, seconds=seconds, **_attributes(("fused", d, group)))

    # The elementwise kernel function: the clip at +-1, and NaN kept.
    values = np.concatenate([rng.uniform(-1.05, 1.05, 1001), [-1.0, 1.0, -1.5, 1.5, np.nan]])
    for d in (2, 32):
        got = kappa_into(cupy.asarray(values), d).get()
        want = kappa(values, d)
        nan_ok = bool(np.array_equal(np.isnan(got), np.isnan(values)))
        error = float(np.nanmax(np.abs(got - want)) / np.nanmax(np.abs(want)))
        worst, count = max(worst, error), count + 1
        if not (nan_ok and error < KERNEL_TOL):
            failures.append(f"kappa d={d}")
        rows(kernel="kappa_into", d=d, size=values.size, error=error, nan_kept=nan_ok)
    # The tile-reading product kernel at every width (beyond PRODUCT_MAX_LANES: the fallback).
    rows_, M = profile["product_tile"]
    for p in sorted(set(profile["lanes"]) | (shipped_lanes if profile["shipped"] else set())):
        _attempt(rows, failures, f"product {rows_}x{M}x{p}", lambda: product(rows_, M, p))
    T = rng.uniform(-1, 1, (rows_, M))
    T[3, 17] = np.nan
    for p in (6, kernel.PRODUCT_MAX_LANES + 1):  # the kernel, and the fallback
        _attempt(rows, failures, f"product NaN p={p}", lambda: nan_check(
            f"product NaN p={p}", kappa_product_into(cupy.asarray(T), cupy.asarray(rng.standard_normal((M, p))), 32,
                                                     cupy.empty((rows_, p))).get(), 3, lanes=p))
    # The fused kernel (inner products inside): the shipped student's whole product, NaN, every
    # width at the shipped dimension (a third group of columns takes the tile path, logged),
    # then every dimension with one and two groups.
    rows_, M = profile["fused_tile"]
    first = sorted(shipped_dims) if profile["shipped"] else list(profile["dims"][:1])
    if profile["shipped"]:
        _attempt(rows, failures, "fused shipped", lambda: fused(*profile["shipped_fused"], first[0], len(TEACHERS) + 1))
    A, B = _unit_rows(rng, rows_, first[0]), _unit_rows(rng, M, first[0])
    A[5, 0] = np.nan
    for p in profile["fused_lanes"]:
        _attempt(rows, failures, f"fused NaN p={p}", lambda: nan_check(
            f"fused NaN p={p}", kappa_fused_product_into(cupy.asarray(A), cupy.asarray(B),
                                                         cupy.asarray(rng.standard_normal((M, p))), first[0],
                                                         cupy.empty((rows_, p))).get(), 5, d=first[0], lanes=p))
    cases = [(d, p) for d in first for p in sorted(set(profile["lanes"]) | shipped_lanes
                                                   if profile["shipped"] else profile["lanes"])]
    cases += [(d, p) for d in profile["dims"] for p in profile["fused_lanes"] if (d, p) not in cases]
    for d, p in cases:
        _attempt(rows, failures, f"fused d={d} p={p}", lambda: fused(rows_, M, d, p))
    if profile["shipped"]:  # the shipped tile (large references on the CPU: last)
        for p in sorted(shipped_lanes):
            _attempt(rows, failures, f"product shipped p={p}", lambda: product(*profile["shipped_tile"], p))
    if reporter is not None:
        reporter.join()
    nvcc = (f"nvcc: {report['sources']} sources, {report['errors']} not compiling, max {report['registers']} "
            f"registers, {report['spilled']} bytes spilled, max {report['shared']} bytes shared" if report
            else "nvcc: not run")
    rows.key(f"{count} shapes, worst error {worst:.1e} (limit {KERNEL_TOL:.0e}), failed: {failures or 'none'}; "
             + nvcc)


def stage_linalg(rows: Rows, profile: dict) -> None:
    """Dense eigh of a kernel and the thin SVD of a sample's features, CuPy against NumPy."""
    from rfw2s.backend import resolve, to_numpy
    from rfw2s.finite_sample import draw_samples
    from rfw2s.seeding import draw
    from rfw2s.solve import losses_from_spectrum, student_spectrum

    be, host = _backend(), resolve("numpy")
    model = _model()
    failures: list = []
    n = profile["eigh_n"]
    W, fits = _problem(model, n, profile["teachers"][:2])
    C = np.stack([model.gram(W, U) @ coef for U, coef in fits], axis=1)
    m, F = model.target_moments(W), model.target_norm2
    results = {}

    def eigh(b):
        (lam, V), seconds = _timed(b, lambda: student_spectrum(model, W, backend=b))
        losses = losses_from_spectrum(lam, V, b.asarray(C), b.asarray(m), F, _rule())
        results[b.name] = (to_numpy(lam), to_numpy(losses))
        rows(what="eigh", backend=b.name, n=n, seconds=seconds)

    for b in (be, host):
        _attempt(rows, failures, f"eigh {b.name}", lambda: eigh(b))
    eig_error = loss_error = svd_error = float("nan")
    if len(results) == 2:
        eig_error = float(np.max(np.abs(results["cupy"][0] - results["numpy"][0])) / results["numpy"][0].max())
        loss_error = _relative(results["cupy"][1], results["numpy"][1])
        rows(what="eigh agreement", n=n, eigenvalues=eig_error, curves=loss_error)
    samples, M = profile["svd"]
    Phi = model.features(draw_samples(model, 0, samples, 0), draw(model, 0, "student", M, 0))
    sv = {}

    def svd(b):
        sv[b.name], seconds = _timed(b, lambda: to_numpy(b.xp.linalg.svd(b.asarray(Phi), full_matrices=False)[1]))
        rows(what="thin svd", backend=b.name, shape=f"{samples}x{M}", seconds=seconds)

    for b in (be, host):
        _attempt(rows, failures, f"svd {b.name}", lambda: svd(b))
    if len(sv) == 2:
        svd_error = float(np.max(np.abs(sv["cupy"] - sv["numpy"])) / sv["numpy"].max())
        rows(what="svd agreement", singular_values=svd_error)
    rows.key(f"eigh {n}: eigenvalues {eig_error:.1e}, curves {loss_error:.1e}; thin SVD {samples}x{M}: "
             f"{svd_error:.1e} (relative to the largest); failed: {failures or 'none'}")


def _fused(on: bool) -> None:
    from rfw2s.models.relu import kernel

    kernel.FUSED_INNER_PRODUCTS = on


def stage_curves(rows: Rows, profile: dict) -> None:
    """The stored, tiled and fused routes on one student at ``curves_M`` (the shipped fig2's
    teachers and grid) agree to CURVES_TOL; and CuPy agrees with NumPy at ``cross_M``."""
    from rfw2s.curves import exact_curves

    be = _backend()
    model = _model()
    rule = _rule()
    failures: list = []
    losses = {}

    def solve(label, M, W, fits, operator, backend, fused=False):
        _fused(fused)
        try:
            curves, seconds = _timed(be, lambda: exact_curves(model, W, fits, rule, operator=operator, backend=backend))
        finally:
            _fused(False)
        losses[label] = curves.losses
        rows(M=M, route=label, steps=curves.steps, converged=curves.converged, achieved_tol=curves.achieved_tol,
             seconds=seconds)

    M = profile["cross_M"]
    W, fits = _problem(model, M, profile["teachers"])
    for backend in ("numpy", be):
        label = f"stored {getattr(backend, 'name', backend)}"
        _attempt(rows, failures, label, lambda: solve(label, M, W, fits, "stored", backend))
    cross = _relative(losses["stored cupy"], losses["stored numpy"]) if len(losses) == 2 else float("nan")
    rows(M=M, what="cupy vs numpy", difference=cross)
    M = profile["curves_M"]
    W, fits = _problem(model, M, profile["teachers"])
    for label, operator, fused in (("stored", "stored", False), ("tiled", "tiled", False), ("fused", "tiled", True)):
        _attempt(rows, failures, label, lambda: solve(label, M, W, fits, operator, be, fused))
    routes = [label for label in ("stored", "tiled", "fused") if label in losses]
    worst = max((_relative(losses[a], losses[b]) for a in routes for b in routes if a < b), default=float("nan"))
    ok = worst <= CURVES_TOL and cross <= CURVES_TOL and not failures
    rows(M=M, what="routes agree", difference=worst, ok=ok)
    rows.key(f"M={M}: stored/tiled/fused within {worst:.1e} ({'ok' if ok else 'FAILED'}, limit {CURVES_TOL:.0e}); "
             f"CuPy vs NumPy at {profile['cross_M']}: {cross:.1e}; failed: {failures or 'none'}")


def stage_samples(rows: Rows, profile: dict) -> None:
    """The finite-sample routes (thin SVD, Krylov on the sample, Krylov with tiles) on CuPy
    agree with one another, and CuPy's Krylov route with NumPy's."""
    from rfw2s.finite_sample import draw_samples, sample_curves

    be = _backend()
    model = _model()
    rule = _rule()
    failures: list = []
    results = {}

    def solve(label, M, n, W, fits, X, operator, backend):
        curves, seconds = _timed(be, lambda: sample_curves(model, W, fits, rule, X, operator=operator,
                                                           backend=backend))
        results[label] = curves.losses
        rows(M=M, n=n, route=label, steps=curves.steps, converged=curves.converged, seconds=seconds)

    for group, (M, n), runs in (("cross", profile["cross_samples"], (("numpy", "krylov"), (be, "krylov"))),
                                ("routes", profile["samples"], ((be, "svd"), (be, "krylov"), (be, "krylov-tiled")))):
        W, fits = _problem(model, M, profile["teachers"])
        X = draw_samples(model, 0, n, 0)
        for backend, operator in runs:
            label = f"{group} {getattr(backend, 'name', backend)} {operator}"
            _attempt(rows, failures, label, lambda: solve(label, M, n, W, fits, X, operator, backend))

    def versus(a, b):
        return _relative(results[a], results[b]) if a in results and b in results else float("nan")

    cross = versus("cross cupy krylov", "cross numpy krylov")
    krylov = versus("routes cupy krylov", "routes cupy svd")
    tiled = versus("routes cupy krylov-tiled", "routes cupy svd")
    rows(what="agreement", cupy_vs_numpy=cross, krylov_vs_svd=krylov, krylov_tiled_vs_svd=tiled)
    rows.key(f"{profile['samples'][0]} x n={profile['samples'][1]}: Krylov vs SVD {krylov:.1e}, Krylov-tiled vs SVD "
             f"{tiled:.1e}; CuPy vs NumPy {cross:.1e}; failed: {failures or 'none'}")


def stage_products(rows: Rows, profile: dict) -> None:
    """One matrix-free product ``H @ X`` (the shipped block: five teachers and the target) at
    ``products_M`` three ways, against each way's floor on this device."""
    from rfw2s.backend import to_numpy
    from rfw2s.curves import tiled_matvec
    from rfw2s.seeding import draw

    be = _backend()
    model = _model()
    M, p = profile["products_M"], len(TEACHERS) + 1
    W = be.asarray(draw(model, 0, "student", M, 0))
    X = be.asarray(np.random.default_rng(0).standard_normal((M, p)))
    peaks = device_peaks(be.device)
    floors = product_floors(M, model.d, p, peaks) if peaks else {}
    products, summary, failures = {}, [], []

    def way(name, how, fused):
        _fused(fused)
        try:
            matvec = tiled_matvec(how, W, M)
            products[name], first = _timed(be, lambda: to_numpy(matvec(X)))  # compiles
            _, seconds = _timed(be, lambda: [matvec(X) for _ in range(profile["repeats"])])
        finally:
            _fused(False)
        seconds /= profile["repeats"]
        row = {"way": name, "M": M, "d": model.d, "columns": p, "first_s": first, "seconds": seconds}
        if name in floors:
            row.update(floor_s=floors[name], over_floor=seconds / floors[name], ideal_s=floors["ideal"])
            summary.append(f"{name} {seconds:.3g} s ({seconds / floors[name]:.1f}x)")
        else:
            summary.append(f"{name} {seconds:.3g} s")
        if name != "plain_tiles" and "plain_tiles" in products:
            row["vs_plain_tiles"] = float(np.max(np.abs(products[name] - products["plain_tiles"]))
                                          / np.max(np.abs(products["plain_tiles"])))
        rows(**row)

    for name, how, fused in (("plain_tiles", _Unfused(model), False), ("tile_reading", model, False),
                             ("fused", model, True)):
        _attempt(rows, failures, name, lambda: way(name, how, fused))
    target = f"; fused target 2x its floor = {2 * floors['fused']:.3g} s" if floors else "; no peaks for this device"
    rows.key(f"M={M}, p={p}: " + ", ".join(summary) + target + f"; failed: {failures or 'none'}")


def stage_sanitize(rows: Rows, profile: dict) -> None:
    """Tiny launches of every CUDA kernel (and, with ``RFW2S_SANITIZE_FALLBACKS=1``, the
    cuBLAS fallbacks), checked against NumPy: the program compute-sanitizer runs."""
    from rfw2s.models.relu.kernel import kappa, kappa_fused_product_into, kappa_into, kappa_product_into

    be = _backend()
    cupy = be.xp
    if hasattr(cupy.cuda, "set_allocator"):  # every array its own cudaMalloc: memcheck sees its bounds
        cupy.cuda.set_allocator(None)
    rng = np.random.default_rng(1)
    fallbacks = os.environ.get("RFW2S_SANITIZE_FALLBACKS") == "1"
    values = rng.uniform(-1.05, 1.05, 257)
    worst = float(np.max(np.abs(kappa_into(cupy.asarray(values), 3).get() - kappa(values, 3))))
    T = rng.uniform(-1.05, 1.05, (5, 70))
    for p in (3, 33) if fallbacks else (3,):
        X = rng.standard_normal((70, p))
        got = kappa_product_into(cupy.asarray(T), cupy.asarray(X), 3, cupy.empty((5, p))).get()
        worst = max(worst, _kernel_error(got, kappa(T, 3), X))
    for d, p in ((3, 3), (40, 9)) + (((40, 17),) if fallbacks else ()):  # two coordinate chunks, two groups
        A, B, X = _unit_rows(rng, 70, d), _unit_rows(rng, 130, d), rng.standard_normal((130, p))
        got = kappa_fused_product_into(cupy.asarray(A), cupy.asarray(B), cupy.asarray(X), d, cupy.empty((70, p))).get()
        worst = max(worst, _kernel_error(got, kappa(A @ B.T, d), X))
    be.synchronize()
    rows(what="tiny launches", fallbacks=fallbacks, worst_error=worst)
    rows.key(f"tiny launches agree to {worst:.1e}")
    if not worst < KERNEL_TOL:
        raise SystemExit(f"the tiny launches disagree with NumPy: {worst:.1e}")


def run(stage: str, profile: str = "device", rows: str | None = None) -> None:
    """Run one stage (STAGES) at ``profile``'s sizes, appending its rows to ``rows``."""
    globals()[f"stage_{stage}"](Rows(stage, rows), PROFILES[profile])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--rows", help="JSON-lines file the rows are appended to")
    parser.add_argument("--profile", choices=tuple(PROFILES), default="device")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # the fallbacks' reasons
    run(args.stage, args.profile, args.rows)


if __name__ == "__main__":
    main()
