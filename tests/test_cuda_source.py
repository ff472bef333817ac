"""The CUDA source of the matrix-free product (ReLU model), checked without a GPU.

The kernel uses no shared memory, synchronisation, warp shuffles or atomics, so running it
as ordinary C++, one thread after another over the whole launch, is exactly its semantics.
The emulated CuPy (tests/emulated_cupy.py) runs it so, with NaN in fresh device memory:
the CuPy path (``kappa_product_into``: launch shape, argument types and order, the sum of
the partial results) must agree with NumPy, and write every partial result. Where nvcc is
installed the same source must also compile for the GPU. (The whole CuPy path, this
kernel within it, is compared with NumPy in test_models.py and test_krylov.py: on the real
CuPy where there is a GPU, else on the emulation.)
"""
import shutil
import subprocess

import numpy as np
import pytest

import emulated_cupy
from conftest import NEEDS_COMPILER
from rfw2s.models import relu_sphere
from rfw2s.models.relu import kernel as relu_module
from rfw2s.models.relu.kernel import kappa, kappa_fused_source, kappa_product_source
from rfw2s.seeding import draw
from rfw2s.solve import SolverError, fit_teacher


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


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("lanes", [1, 6])
def test_kappa_product_source_compiles_for_the_gpu(tmp_path, lanes):
    source = tmp_path / "product.cu"
    source.write_text(kappa_product_source(lanes))
    result = subprocess.run(["nvcc", "-arch=sm_90", "-c", "-o", str(tmp_path / "product.o"), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


@NEEDS_COMPILER
@pytest.mark.parametrize("rows, M, dim, lanes", [
    (100, 300, 32, 6),  # a partial last block of rows, a partial last chunk of columns
    (64, 64, 8, 1),  # exactly one block and one chunk
    (7, 130, 3, 2),  # fewer rows than a block, a dimension that is no multiple of the unroll
])
def test_the_fused_kernel_with_its_inner_products_agrees_with_numpy(host_cupy, rows, M, dim, lanes):
    # Its threads share memory and meet at barriers: the emulation runs each block's threads
    # as real threads, so a missing barrier or a chunk staged over another's shows here.
    rng = np.random.default_rng(rows + M + dim)
    A = rng.standard_normal((rows, dim))
    A /= np.linalg.norm(A, axis=1, keepdims=True)
    B = rng.standard_normal((M, dim))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    X = rng.standard_normal((M, lanes))
    out = host_cupy.empty((rows, lanes))
    got = relu_module.kappa_fused_product_into(host_cupy.asarray(A), host_cupy.asarray(B), host_cupy.asarray(X), dim,
                                                out)
    assert got is out
    want = kappa(A @ B.T, dim) @ X
    scale = kappa(np.abs(A @ B.T), dim) @ np.abs(X)
    assert np.max(np.abs(out.get() - want) / scale) < 1e-13


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
def test_the_fused_kernel_compiles_for_the_gpu_without_spills(tmp_path):
    source = tmp_path / "fused.cu"
    source.write_text(kappa_fused_source(32, 6))
    result = subprocess.run(["nvcc", "-arch=sm_90", "-Xptxas", "-v", "-c", "-o", str(tmp_path / "fused.o"),
                             str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "0 bytes spill stores" in result.stderr, result.stderr


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
    out = relu_module.kappa_product_into(host_cupy.asarray(T), host_cupy.asarray(rng.standard_normal((70, 3))), 4,
                                         host_cupy.empty((6, 3))).get()
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
