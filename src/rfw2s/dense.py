"""The dense eigendecomposition, with clear failures: the reference solver's one step, and the
teachers' least squares."""
from __future__ import annotations

from .backend import Backend, as_backend
from .errors import SolverError

# Bump when a change alters the numbers a step produces: part of the key of what it writes.
EIGH_VERSION = "2"  # spectrum_of_gram
# LAPACK's eigh (NumPy, 32-bit workspace indexing) fails for n >= 32767.
NUMPY_EIGH_MAX_N = 32766


def symmetric_eigh(A, backend: Backend):
    """Eigendecomposition of a symmetric matrix with clear failures (never NaNs)."""
    n = A.shape[0]
    if backend.name == "numpy" and n > NUMPY_EIGH_MAX_N:
        raise SolverError(
            f"dense eigh of a {n} x {n} matrix on numpy: LAPACK eigh fails for n >= "
            f"{NUMPY_EIGH_MAX_N + 1}; use a GPU (backend: cupy) or a smaller m_st"
        )
    try:
        with backend.linalg_guard():
            w, V = backend.xp.linalg.eigh(A)
    except Exception as exc:
        raise SolverError(f"eigh failed for a {n} x {n} matrix on {backend.name}: {exc}") from exc
    if not bool(backend.xp.all(backend.xp.isfinite(w))):
        raise SolverError(f"eigh returned non-finite eigenvalues for a {n} x {n} matrix on {backend.name}")
    return w, V


def spectrum_of_gram(G, backend, divisor: float | None = None) -> tuple:
    """``eigh(G / M)`` (``G / divisor``) with round-off negative eigenvalues clipped to 0."""
    be = as_backend(backend)
    G = be.asarray(G)
    lam, V = symmetric_eigh(G / (G.shape[0] if divisor is None else divisor), be)
    return be.xp.maximum(lam, 0.0), V


def student_spectrum(model, W, *, backend="numpy"):
    """Eigenvalues (clipped at 0) and eigenvectors of ``H = gram(W, W) / M``, on ``backend``."""
    be = as_backend(backend)
    Wx = be.asarray(W)
    return spectrum_of_gram(model.gram(Wx, Wx), be)
