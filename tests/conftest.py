import numpy as np
import pytest

from rfw2s import backend as backends


def _gpu_reason():
    try:
        backends.resolve("cupy")
        return None
    except backends.BackendError as exc:
        return str(exc)


GPU_MISSING = _gpu_reason()

# Every solver assertion runs on NumPy, and on CuPy where a GPU is usable.
BACKENDS = [
    "numpy",
    pytest.param("cupy", marks=pytest.mark.skipif(GPU_MISSING is not None, reason=f"no GPU: {GPU_MISSING}")),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
