"""Order-independent draws, and the backend choice."""
import os

import numpy as np
import pytest

from conftest import GPU_MISSING
from rfw2s import backend as backends
from rfw2s.models import relu_sphere
from rfw2s.seeding import seed_sequence


def test_a_draw_depends_only_on_its_key():
    model = relu_sphere(4)
    key = (3, "teacher", 16, 1)
    first = model.sample_features(seed_sequence(*key), 16)
    model.sample_features(seed_sequence(3, "teacher", 32, 1), 32)  # other draws in between
    assert np.array_equal(first, model.sample_features(seed_sequence(*key), 16))
    others = [(4, "teacher", 16, 1), (3, "student", 16, 1), (3, "teacher", 17, 1), (3, "teacher", 16, 2)]
    for other in others:
        assert not np.allclose(first[:16], model.sample_features(seed_sequence(*other), other[2])[:16])


def test_bad_seed_keys_are_refused():
    with pytest.raises(ValueError, match="role"):
        seed_sequence(0, "critic", 4, 0)
    with pytest.raises(ValueError, match="replicate must be a non-negative integer"):
        seed_sequence(0, "student", 4, -1)


def test_unknown_backend_is_refused_with_the_allowed_names():
    with pytest.raises(backends.BackendError, match="auto, numpy, cupy"):
        backends.resolve("tpu")


@pytest.mark.skipif(GPU_MISSING is None, reason="a GPU is usable here")
def test_without_a_gpu_auto_falls_back_to_numpy_and_cupy_is_refused():
    assert backends.resolve("auto").name == "numpy"
    with pytest.raises(backends.BackendError, match="backend: cupy was requested but"):
        backends.resolve("cupy")


def test_array_namespace_and_host_copies():
    a = np.arange(3.0)
    assert backends.array_namespace(a) is np
    assert backends.to_numpy(a) is a  # a NumPy array passes through, no copy
    assert backends.as_backend("numpy").name == "numpy"
    be = backends.resolve("numpy")
    assert backends.as_backend(be) is be
    assert "numpy" in backends.versions()


def test_blas_threads_are_taken_anywhere_on_the_command_line(monkeypatch):
    from rfw2s.__main__ import without_blas_threads
    from rfw2s.machine import BLAS_VARIABLES, set_blas_threads

    assert without_blas_threads(["curves", "--recipe", "{}", "--blas-threads", "3"]) == (["curves", "--recipe", "{}"], "3")
    assert without_blas_threads(["--blas-threads=all", "eigh", "--gram", "g.npy"]) == (["eigh", "--gram", "g.npy"], "all")
    assert without_blas_threads(["summary", "results/x"]) == (["summary", "results/x"], None)
    with pytest.raises(SystemExit, match="needs a value"):
        without_blas_threads(["kernel", "--blas-threads"])
    for name in BLAS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the job's budget under --cores 1: `all` looks past it
    cores = len(os.sched_getaffinity(0))
    assert set_blas_threads("all") == cores and all(os.environ[n] == str(cores) for n in BLAS_VARIABLES)
    assert set_blas_threads("2") == 2 and os.environ["OPENBLAS_NUM_THREADS"] == "2"
    with pytest.raises(ValueError, match="a count of at least 1 or 'all'; got 'many'"):
        set_blas_threads("many")
