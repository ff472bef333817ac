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
from rfw2s.models.relu import kernel as relu_module
from rfw2s.models.relu.kernel import kappa, kappa_product_source


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
