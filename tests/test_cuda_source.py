"""The CUDA sources of the ReLU model's kernels, checked without a GPU.

The tile-reading product kernel uses no shared memory, synchronisation, warp shuffles or
atomics, so running it as ordinary C++, one thread after another over the whole launch, is
exactly its semantics; the fused kernel (inner products inside) shares memory and meets at
barriers, and the emulation runs each of its blocks' threads as real threads. The emulated
CuPy (tests/emulated_cupy.py) runs them so, with NaN in fresh device memory: the CuPy path
(launch shape, groups of columns, argument types and order, the sum of the partial results,
the logged fallbacks of blocks too wide for a kernel) must agree with NumPy, and write every
partial result; a NaN inner product must give NaN, as on the CPU. Where nvcc is installed
every source the CuPy path compiles, at every shape the device check runs
(bench/device_check.py), must compile for sm_90 without spilling registers (the test prints
each one's registers, spills and shared memory). (The whole CuPy path, these kernels within
it, is compared with NumPy in test_models.py and test_krylov.py: on the real CuPy where
there is a GPU, else on the emulation.)
"""
import importlib.util
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

import emulated_cupy
from conftest import NEEDS_COMPILER
from rfw2s.models import relu_sphere
from rfw2s.models.relu import kernel as relu_module
from rfw2s.models.relu.kernel import cuda_sources, kappa, ptxas_usage
from rfw2s.seeding import draw
from rfw2s.solve import SolverError, fit_teacher

NVCC = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA compiler) to compile for the GPU")


def _device_check():
    """bench/device_check.py as a module: its shape lists are the ones checked here."""
    spec = importlib.util.spec_from_file_location("device_check", Path(__file__).parents[1] / "bench" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unit_rows(rng, n, d):
    rows = rng.standard_normal((n, d))
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def host_cupy(monkeypatch):
    return emulated_cupy.install(monkeypatch)


@NEEDS_COMPILER
@pytest.mark.parametrize("shape", ["default", (8, 128, 4096)])  # rows per thread, block, warps
@pytest.mark.parametrize("rows, M, lanes", [
    (37, 1000, 3),  # a partial row group (at 8 rows per thread), a partial last slice
    (1, 33, 1),  # one row, one column past a warp's stride
    (20, 4099, 6),  # many one-stride slices
    (4096, 5000, 6),  # wide slices (several strides per lane)
])
def test_kappa_product_kernel_agrees_with_numpy(host_cupy, monkeypatch, shape, rows, M, lanes):
    if shape != "default":
        for name, value in zip(("PRODUCT_ROWS", "PRODUCT_BLOCK", "PRODUCT_WARPS"), shape):
            monkeypatch.setattr(relu_module, name, value)
        monkeypatch.setattr(relu_module, "_CUDA_KERNELS", {})  # ROWS is compiled in
    rng = np.random.default_rng(rows + M + lanes)
    d = 32
    # Inner products slightly outside [-1, 1], as round-off gives them: the kernel clips.
    T = rng.uniform(-1.05, 1.05, size=(rows, M))
    X = rng.standard_normal((M, lanes))
    out = host_cupy.empty((rows, lanes))
    assert relu_module.kappa_product_into(host_cupy.asarray(T), host_cupy.asarray(X), d, out) is out
    out = out.get()
    want = kappa(T, d) @ X
    scale = kappa(np.abs(T), d) @ np.abs(X)  # the sum's magnitude, against cancellation
    assert np.max(np.abs(out - want) / scale) < 1e-13
    slices, slice_width, _ = relu_module.product_launch(rows, M)
    assert slices * slice_width >= M > (slices - 1) * slice_width and slice_width % 32 == 0


@NEEDS_COMPILER
def test_kappa_product_refuses_a_tile_it_cannot_read(host_cupy):
    T, out = host_cupy.zeros((4, 10)), host_cupy.empty((4, 2))
    with pytest.raises(ValueError, match="C-contiguous float64 tile"):
        relu_module.kappa_product_into(host_cupy.asfortranarray(T), host_cupy.zeros((10, 2)), 3, out)
    with pytest.raises(ValueError, match="as many rows as the tile has columns"):
        relu_module.kappa_product_into(T, host_cupy.zeros((9, 2)), 3, out)


@NEEDS_COMPILER
def test_a_block_wider_than_the_product_kernel_takes_cublas_and_says_why(host_cupy, monkeypatch, caplog):
    monkeypatch.setattr(relu_module, "_LOGGED", set())
    rng = np.random.default_rng(3)
    lanes = relu_module.PRODUCT_MAX_LANES + 1
    T = rng.uniform(-1.05, 1.05, size=(9, 70))
    X = rng.standard_normal((70, lanes))
    out = host_cupy.empty((9, lanes))
    with caplog.at_level(logging.INFO, logger="rfw2s"):
        relu_module.kappa_product_into(host_cupy.asarray(T), host_cupy.asarray(X), 5, out)
        relu_module.kappa_product_into(host_cupy.asarray(T), host_cupy.asarray(X), 5, out)
    assert np.max(np.abs(out.get() - kappa(T, 5) @ X) / (kappa(np.abs(T), 5) @ np.abs(X))) < 1e-13
    reasons = [r.getMessage() for r in caplog.records if "wider than the product kernel" in r.getMessage()]
    assert len(reasons) == 1 and "registers would spill" in reasons[0]  # once, not at every step
    assert ("product", lanes) not in relu_module._CUDA_KERNELS


@NEEDS_COMPILER
@pytest.mark.parametrize("rows, M, dim, lanes", [
    (100, 300, 32, 6),  # a partial last block of rows, a partial last chunk of columns
    (64, 64, 8, 1),  # exactly one block and one chunk
    (7, 130, 3, 2),  # fewer rows than a block, a dimension that is no multiple of the unroll
    (70, 130, 40, 9),  # two chunks of coordinates (A's rows staged again), two groups, the last padded
    (65, 64, 65, 16),  # three chunks of coordinates, the last of one; two whole groups
])
def test_the_fused_kernel_with_its_inner_products_agrees_with_numpy(host_cupy, rows, M, dim, lanes):
    # Its threads share memory and meet at barriers: the emulation runs each block's threads
    # as real threads, so a missing barrier or a chunk staged over another's shows here.
    rng = np.random.default_rng(rows + M + dim)
    A, B = _unit_rows(rng, rows, dim), _unit_rows(rng, M, dim)
    X = rng.standard_normal((M, lanes))
    out = host_cupy.empty((rows, lanes))
    got = relu_module.kappa_fused_product_into(host_cupy.asarray(A), host_cupy.asarray(B), host_cupy.asarray(X), dim,
                                                out)
    assert got is out
    want = kappa(A @ B.T, dim) @ X
    scale = kappa(np.abs(A @ B.T), dim) @ np.abs(X)
    assert np.max(np.abs(out.get() - want) / scale) < 1e-13


@NEEDS_COMPILER
@pytest.mark.parametrize("max_groups", [3, "default"])
def test_a_block_of_many_columns_runs_in_groups_or_on_tiles(host_cupy, monkeypatch, caplog, max_groups):
    # 17 columns: three groups of the fused kernel's 8 (each block picks its group from the
    # block index), or, by default, the tile path, which says why once.
    monkeypatch.setattr(relu_module, "_LOGGED", set())
    if max_groups != "default":
        monkeypatch.setattr(relu_module, "FUSED_MAX_GROUPS", max_groups)
    rng = np.random.default_rng(17)
    A, B = _unit_rows(rng, 70, 5), _unit_rows(rng, 90, 5)
    X = rng.standard_normal((90, 17))
    out = host_cupy.empty((70, 17))
    with caplog.at_level(logging.INFO, logger="rfw2s"):
        relu_module.kappa_fused_product_into(host_cupy.asarray(A), host_cupy.asarray(B), host_cupy.asarray(X), 5, out)
    K = kappa(A @ B.T, 5)
    assert np.max(np.abs(out.get() - K @ X) / (np.abs(K) @ np.abs(X))) < 1e-13
    fell_back = any("groups of the fused kernel" in r.getMessage() for r in caplog.records)
    assert fell_back == (max_groups == "default")
    assert (("fused", 5, 8) in relu_module._CUDA_KERNELS) == (max_groups != "default")


@NEEDS_COMPILER
def test_a_nan_inner_product_gives_nan_in_every_cuda_kernel(host_cupy):
    # fmin/fmax would clip NaN to a finite kernel value; the CPU's clip keeps it.
    rng = np.random.default_rng(5)
    values = np.array([0.3, np.nan, 1.2, -1.2])
    got = relu_module.kappa_into(host_cupy.asarray(values), 4).get()
    assert np.isnan(got[1]) and np.all(np.isfinite(got[[0, 2, 3]]))
    assert np.isnan(kappa(values, 4)[1])
    T = rng.uniform(-1, 1, size=(6, 70))
    T[2, 40] = np.nan
    for lanes in (3, relu_module.PRODUCT_MAX_LANES + 1):  # the kernel, and cuBLAS after kappa in place
        out = relu_module.kappa_product_into(host_cupy.asarray(T), host_cupy.asarray(rng.standard_normal((70, lanes))),
                                             4, host_cupy.empty((6, lanes))).get()
        assert np.all(np.isnan(out[2])) and np.all(np.isfinite(np.delete(out, 2, axis=0)))
    A, B = _unit_rows(rng, 66, 4), _unit_rows(rng, 70, 4)
    A[3, 2] = np.nan
    out = relu_module.kappa_fused_product_into(host_cupy.asarray(A), host_cupy.asarray(B),
                                               host_cupy.asarray(rng.standard_normal((70, 2))), 4,
                                               host_cupy.empty((66, 2))).get()
    assert np.all(np.isnan(out[3])) and np.all(np.isfinite(np.delete(out, 3, axis=0)))


def test_a_nan_feature_direction_raises_on_cupy_as_on_numpy(backend):
    # The kernel of a NaN direction is NaN on both (the GPU's clamp keeps NaN), so the solver's
    # checks stop it; a finite kernel there would give the teacher a NaN loss, silently.
    model = relu_sphere(5)
    U = draw(model, 0, "teacher", 6, 0)
    U[2, 1] = np.nan
    with pytest.raises(SolverError, match="eigh"):
        fit_teacher(model, U, backend=backend)


@NVCC
def test_every_kernel_compiles_for_the_gpu_at_every_shape_without_spills():
    # Every source the CuPy path compiles at the shapes the device check runs (the shipped
    # configs' and the edges: d up to 128, 1 to 120 columns), in one nvcc run for sm_90 (H100
    # and H200): none spills, none needs more shared memory than a block may have statically.
    check = _device_check()
    dims, lanes = check.shipped_shapes()
    sources = cuda_sources(sorted(set(check.REPORT_DIMS) | dims), sorted(set(check.KERNEL_LANES) | lanes))
    usage = ptxas_usage(sources)
    print("\nkernel, registers, spill stores/loads (bytes), stack (bytes), static shared memory (bytes):")
    for name, numbers in sorted(usage.items()):
        print(name, numbers)
    assert set(usage) == set(sources)
    assert not [name for name, u in usage.items() if "error" in u], usage
    assert all(u["spill_stores"] == 0 and u["spill_loads"] == 0 and u["stack"] == 0 for u in usage.values()), usage
    assert all(u["registers"] <= 255 and u["shared"] <= 48 * 1024 for u in usage.values()), usage
    # The shared memory is the same for every dimension: it grows with a group's columns alone.
    fused = {name: u["shared"] for name, u in usage.items() if name.startswith("fused")}
    assert len({shared for name, shared in fused.items() if name.endswith("_l8")}) == 1


def test_ptxas_usage_names_a_source_that_does_not_compile(monkeypatch, tmp_path):
    # The report attributes a failure to its source (a fake nvcc here: the parsing is what
    # is checked, on any machine).
    fake = tmp_path / "nvcc"
    fake.write_text("#!/bin/sh\necho \"ptxas error   : Entry function 'rfw2s_relu_kappa_fused__bad' uses too much "
                    "shared data\" >&2\nexit 1\n")
    fake.chmod(0o755)
    sources = cuda_sources([3], [2])
    usage = ptxas_usage({"bad": sources["fused_d3_l2"]}, nvcc=str(fake))
    assert "too much shared data" in usage["bad"]["error"]
