"""The CUDA source of the matrix-free product (ReLU model), checked without a GPU.

The kernel uses no shared memory, synchronisation, warp shuffles or atomics, so running it
as ordinary C++, one thread after another over the whole launch, is exactly its semantics.
Here CuPy is replaced by NumPy and a ``RawKernel`` that runs the source so: the CuPy path
(``kappa_product_into``: launch shape, argument order, the sum of the partial results) must
agree with NumPy. Where nvcc is installed the same source must also compile for the GPU.
(On a GPU the real CuPy path is compared with NumPy in test_models.py and test_krylov.py.)
"""
import ctypes
import importlib
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest

from rfw2s.models.relu_sphere import kappa, kappa_product_source

relu_module = importlib.import_module("rfw2s.models.relu_sphere")  # the package exports a function of that name

# What CUDA provides implicitly, for a host compiler.
HOST_PRELUDE = r"""
#include <math.h>
struct Index { unsigned x; };
static Index blockIdx, threadIdx, blockDim;
#define __global__
"""
# Every thread of the launch, in order.
HOST_LAUNCH = r"""
extern "C" void launch(long long blocks, long long block, const double* T, const double* X,
                       double* partial, long long rows, long long M, long long slice_width, double scale) {
    blockDim.x = (unsigned)block;
    for (long long b = 0; b < blocks; ++b)
        for (long long t = 0; t < block; ++t) {
            blockIdx.x = (unsigned)b;
            threadIdx.x = (unsigned)t;
            rfw2s_relu_kappa_product(T, X, partial, rows, M, slice_width, scale);
        }
}
"""


class HostRawKernel:
    """``cupy.RawKernel`` for this kernel, run on the host: compiled by g++, launched thread
    by thread. Arguments are checked for the types CuPy would pass to the kernel."""

    def __init__(self, source, name, directory):
        assert name == "rfw2s_relu_kappa_product"
        path = directory / f"kernel_{abs(hash(source))}"
        path.with_suffix(".cpp").write_text(HOST_PRELUDE + source + HOST_LAUNCH)
        subprocess.run(["g++", "-O2", "-shared", "-fPIC", "-o", str(path.with_suffix(".so")),
                        str(path.with_suffix(".cpp"))], check=True)
        self.launch = ctypes.CDLL(str(path.with_suffix(".so"))).launch
        array = np.ctypeslib.ndpointer(np.float64, flags="C_CONTIGUOUS")
        self.launch.argtypes = [ctypes.c_longlong, ctypes.c_longlong, array, array, array,
                                ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_double]

    def __call__(self, grid, block, args):
        T, X, partial, rows, M, slice_width, scale = args
        assert [type(a) for a in args[3:]] == [np.int64, np.int64, np.int64, np.float64]
        # NaN where no thread writes: every entry must be written (the sum would show a miss).
        partial[...] = np.nan
        self.launch(grid[0], block[0], T, X, partial, rows, M, slice_width, scale)


@pytest.fixture
def host_cupy(tmp_path, monkeypatch):
    """CuPy, as far as ``kappa_product_into`` uses it, on the host."""
    fake = types.SimpleNamespace(float64=np.float64, empty=np.empty, ascontiguousarray=np.ascontiguousarray,
                                 RawKernel=lambda source, name: HostRawKernel(source, name, tmp_path))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(relu_module, "_CUDA_KERNELS", {})
    return fake


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler (g++)")
@pytest.mark.parametrize("rows, M, lanes", [
    (37, 1000, 3),  # a partial row group, a partial last slice
    (1, 33, 1),  # one row, one column past a warp's stride
    (20, 4099, 6),  # many one-stride slices
    (4096, 5000, 6),  # wide slices (several strides per lane)
])
def test_kappa_product_kernel_agrees_with_numpy(host_cupy, rows, M, lanes):
    rng = np.random.default_rng(rows + M + lanes)
    d = 32
    # Inner products slightly outside [-1, 1], as round-off gives them: the kernel clips.
    T = rng.uniform(-1.05, 1.05, size=(rows, M))
    X = rng.standard_normal((M, lanes))
    out = np.full((rows, lanes), np.nan)
    assert relu_module.kappa_product_into(T, X, d, out) is out
    want = kappa(T, d) @ X
    scale = kappa(np.abs(T), d) @ np.abs(X)  # the sum's magnitude, against cancellation
    assert np.max(np.abs(out - want) / scale) < 1e-13
    slices, slice_width, _ = relu_module.product_launch(rows, M)
    assert slices * slice_width >= M > (slices - 1) * slice_width and slice_width % 32 == 0


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs a C++ compiler (g++)")
def test_kappa_product_refuses_a_tile_it_cannot_read(host_cupy):
    T = np.zeros((4, 10))
    with pytest.raises(ValueError, match="C-contiguous float64 tile"):
        relu_module.kappa_product_into(np.asfortranarray(T), np.zeros((10, 2)), 3, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="as many rows as the tile has columns"):
        relu_module.kappa_product_into(T, np.zeros((9, 2)), 3, np.zeros((4, 2)))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc")
@pytest.mark.parametrize("lanes", [1, 6])
def test_kappa_product_source_compiles_for_the_gpu(tmp_path, lanes):
    source = tmp_path / "product.cu"
    source.write_text(kappa_product_source(lanes))
    result = subprocess.run(["nvcc", "-arch=sm_90", "-c", "-o", str(tmp_path / "product.o"), str(source)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
