"""The emulated CuPy keeps CuPy's rules: each is asserted on the emulation, and on the real
CuPy where a GPU is usable (the emulation is only worth what it shares with CuPy)."""
import numpy as np
import pytest

import emulated_cupy
from conftest import GPU_MISSING, NEEDS_COMPILER


@pytest.fixture(params=[
    pytest.param("emulated", marks=NEEDS_COMPILER),
    pytest.param("real", marks=pytest.mark.skipif(GPU_MISSING is not None, reason=f"no GPU: {GPU_MISSING}")),
])
def cupy(request, monkeypatch):
    if request.param == "emulated":
        return emulated_cupy.install(monkeypatch)
    import cupy

    return cupy


def test_device_arrays_are_not_host_arrays(cupy):
    a = cupy.asarray(np.arange(6.0).reshape(2, 3))
    host = np.ones(3)
    with pytest.raises(TypeError):
        np.asarray(a)
    with pytest.raises(TypeError):
        a[0] + host
    with pytest.raises(TypeError):
        host + a[0]
    with pytest.raises(TypeError):
        host[:] = a[0]
    with pytest.raises(TypeError):
        cupy.matmul(a, np.ones((3, 2)))
    with pytest.raises(ValueError, match="non-scalar numpy.ndarray cannot be used for fill"):
        a[0] = host


def test_what_crosses_explicitly_crosses(cupy):
    host = np.arange(6.0).reshape(2, 3)
    a = cupy.asarray(host)
    assert isinstance(a.get(), np.ndarray) and np.array_equal(a.get(), host)
    assert float(a.sum()) == 15.0 and isinstance(a.sum(), cupy.ndarray)  # reductions stay on the device
    assert isinstance(np.sqrt(a), cupy.ndarray) and isinstance(np.max(a), cupy.ndarray)
    a[1] = cupy.asarray(host[0])
    a[0, 0] = 7.0
    assert a.get().tolist() == [[7.0, 1.0, 2.0], [0.0, 1.0, 2.0]]
    out = cupy.empty((2, 2))
    assert cupy.matmul(a, a.T, out=out) is out


def test_kernels_run_their_source(cupy):
    add = cupy.ElementwiseKernel("float64 scale", "float64 k", "k = k * scale + 1.0;", "rfw2s_test_axpb")
    a = cupy.asarray(np.arange(4.0))
    add(2.0, a)
    assert a.get().tolist() == [1.0, 3.0, 5.0, 7.0]
    source = r'''extern "C" __global__ void rfw2s_test_index(double* out, const long long n, const double scale) {
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) out[i] = scale * i;
    }'''
    kernel = cupy.RawKernel(source, "rfw2s_test_index")
    out = cupy.zeros(100)
    kernel((4,), (32,), (out, np.int64(100), np.float64(0.5)))
    assert np.array_equal(out.get(), 0.5 * np.arange(100))


@NEEDS_COMPILER
def test_the_emulation_shows_what_a_gpu_would_hide(monkeypatch):
    cupy = emulated_cupy.install(monkeypatch)
    assert np.isnan(cupy.empty((3, 2)).get()).all()  # unwritten device memory reads as NaN
    a = cupy.ones((2, 2))
    with pytest.raises(TypeError, match="out must be a device array"):
        cupy.matmul(a, a, out=np.empty((2, 2)))  # the results would stay on the device
    kernel = cupy.RawKernel(r'''extern "C" __global__ void rfw2s_test_fill(double* out, const long long n) {
        out[threadIdx.x] = (double)n; }''', "rfw2s_test_fill")
    with pytest.raises(TypeError, match="n \\(long long\\) needs numpy.int64; got int"):
        kernel((1,), (2,), (cupy.zeros(2), 2))  # CuPy would pass a Python int as it sees fit
    with pytest.raises(TypeError, match="needs a C-contiguous float64 device array"):
        kernel((1,), (2,), (cupy.zeros((2, 2)).T, np.int64(2)))
