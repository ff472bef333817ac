import numpy as np
import pytest

import emulated_cupy
from rfw2s import backend as backends


def _gpu_reason():
    try:
        backends.resolve("cupy")
        return None
    except backends.BackendError as exc:
        return str(exc)


GPU_MISSING = _gpu_reason()
NEEDS_COMPILER = pytest.mark.skipif(emulated_cupy.COMPILER is None,
                                    reason="needs g++: the emulated CuPy runs CUDA sources compiled as C++")

# Every solver assertion runs on NumPy, and on CuPy: the real one where a GPU is usable,
# else its strict emulation (tests/emulated_cupy.py: CuPy's rules for device arrays, the
# CUDA kernels' source run as C++), so the CuPy code paths are tested on every machine.
CUPY = "cupy" if GPU_MISSING is None else pytest.param("emulated-cupy", marks=NEEDS_COMPILER)
BACKENDS = ["numpy", CUPY]


def _backend_name(request, monkeypatch) -> str:
    if request.param == "emulated-cupy":
        emulated_cupy.install(monkeypatch)
        return "cupy"
    return request.param


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    return _backend_name(request, monkeypatch)


@pytest.fixture(params=[CUPY])
def cupy_backend(request, monkeypatch):
    """CuPy, real or emulated, for comparisons with NumPy."""
    return _backend_name(request, monkeypatch)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
