"""Teacher fit and the exact finite-width student (SPEC section 2).

Conventions: ``f = M^{-1/2} sum_j theta_j phi_j``, loss ``1/2 E[(f - y)^2]``, gradient flow
from ``theta(0) = 0``. With ``H = G_ST / M = V diag(lam) V^T``, ``c = gram(W, U) @ coef``,
``c^ = V^T c``, ``m^ = V^T m_ST`` and ``g_t(lam) = (1 - exp(-t lam)) / lam``::

    L_ST(t) = F + (1/M) sum_k [ g_t(lam_k)^2 lam_k c^_k^2 - 2 g_t(lam_k) c^_k m^_k ]

One eigendecomposition per student draw serves every teacher and every ``t``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import Backend, array_namespace, as_backend, to_numpy

# Bump when a change alters the numbers these solvers produce: the workflow passes it
# as a rule parameter, so exactly the stale steps rerun.
SOLVER_VERSION = "4"
# The dense eigendecomposition step alone: its numbers have not changed since version 2.
EIGH_VERSION = "2"

# LAPACK's eigh (NumPy, 32-bit workspace indexing) fails for n >= 32767.
NUMPY_EIGH_MAX_N = 32766


class SolverError(RuntimeError):
    """A linear-algebra step failed; the message names the size and backend."""


def relative_cutoff(eigvals, n: int):
    """Eigenvalues at or below this are numerically zero (pseudo-inverse convention)."""
    xp = array_namespace(eigvals)
    return float(xp.max(xp.abs(eigvals))) * n * np.finfo(np.float64).eps


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


@dataclass(frozen=True)
class TeacherFit:
    coef: np.ndarray  # minimum-norm coefficients, f_TE = sum_j coef_j phi(.; u_j)
    loss: float  # L_TE = E[(f_TE - f*)^2]
    rank: int  # numerical rank of G_TE used in the pseudo-inverse


def fit_teacher(model, U, *, backend="numpy") -> TeacherFit:
    """Population least squares of ``f*`` on the teacher's features (the converged teacher).

    ``coef = pinv(G_TE) m_TE`` through ``eigh`` with a relative cut-off, so a singular or
    ill-conditioned ``G_TE`` (duplicate features, say) gives the same function as its
    well-posed reduction instead of NaNs.
    """
    be = as_backend(backend)
    Ux = be.asarray(U)
    G = model.gram(Ux, Ux)
    m = model.target_moments(Ux)
    w, V = symmetric_eigh(G, be)
    keep = w > relative_cutoff(w, G.shape[0])
    proj = V.T @ m
    coef = V @ be.xp.where(keep, proj / be.xp.where(keep, w, 1.0), 0.0)
    F = model.target_norm2
    loss = F - float(m @ coef)
    # Cancellation can leave a loss a few ulps below zero when f* is (almost) in the span.
    tol = 64 * np.finfo(np.float64).eps * F
    if loss < -tol:
        raise SolverError(f"teacher loss {loss:.3e} is negative beyond round-off (M_TE = {U.shape[0]})")
    return TeacherFit(coef=to_numpy(coef), loss=max(loss, 0.0), rank=int(keep.sum()))


def student_spectrum(model, W, *, backend="numpy"):
    """Eigenvalues (clipped at 0) and eigenvectors of ``H = gram(W, W) / M``, on ``backend``."""
    be = as_backend(backend)
    Wx = be.asarray(W)
    return spectrum_of_gram(model.gram(Wx, Wx), be)


def spectrum_of_gram(G, backend) -> tuple:
    """``eigh(G / M)`` with round-off negative eigenvalues clipped to 0."""
    be = as_backend(backend)
    M = G.shape[0]
    G = be.asarray(G)
    lam, V = symmetric_eigh(G / M, be)
    return be.xp.maximum(lam, 0.0), V


def growth(ts, lam):
    """``g_t(lam) = -expm1(-t lam) / lam`` for every ``t`` (rows) and ``lam`` (columns).

    ``g_t(0) = t``; at ``t = inf`` it is the pseudo-inverse ``1/lam`` on eigenvalues above
    the relative cut-off and 0 below (gradient flow never moves in the null space).
    """
    xp = array_namespace(lam)
    ts = xp.asarray(ts, dtype=xp.float64).reshape(-1, 1)
    if bool(xp.any(ts < 0)) or bool(xp.any(xp.isnan(ts))):
        raise ValueError("times t must be non-negative numbers")
    lam = lam.reshape(1, -1)
    positive = lam > 0
    safe = xp.where(positive, lam, 1.0)
    finite_t = xp.where(xp.isinf(ts), 0.0, ts)
    g = xp.where(positive, -xp.expm1(-finite_t * lam) / safe, finite_t)
    if bool(xp.any(xp.isinf(ts))):
        invertible = lam > relative_cutoff(lam, lam.shape[1])
        g_inf = xp.where(invertible, 1.0 / xp.where(invertible, lam, 1.0), 0.0)
        g = xp.where(xp.isinf(ts), g_inf, g)
    return g


def losses_from_spectrum(lam, V, c, m, F: float, ts):
    """Exact ``L_ST(t)`` from the student spectrum.

    ``c`` is ``E[phi_j f_TE]`` for the student features, shape ``(M,)`` or ``(M, n_teachers)``
    (all teachers of one student draw in one pass); ``m`` is ``E[phi_j f*]``. Returns an
    array of shape ``(len(ts),)`` or ``(n_teachers, len(ts))`` in the library of ``lam``.
    """
    xp = array_namespace(lam, V)
    M = lam.shape[0]
    single = c.ndim == 1
    C = c.reshape(M, -1)
    c_hat = V.T @ C  # (M, n)
    m_hat = V.T @ m  # (M,)
    g = growth(ts, lam)  # (T, M)
    quad = (g * g * lam) @ (c_hat * c_hat)  # (T, n)
    cross = g @ (c_hat * m_hat[:, None])  # (T, n)
    out = (F + (quad - 2.0 * cross) / M).T
    if not bool(xp.all(xp.isfinite(out))):
        raise SolverError(f"non-finite student loss (M_ST = {M}); check the time grid and inputs")
    return out[0] if single else out


def student_losses(model, W, U, coef, ts, *, backend="numpy") -> np.ndarray:
    """Exact finite-width ``L_ST(t)`` for the student ``W`` trained on the teacher ``(U, coef)``.

    Inputs are NumPy arrays (feature directions as rows); returns a NumPy array, one
    loss per ``t`` in ``ts``.
    """
    be = as_backend(backend)
    Wx, Ux = be.asarray(W), be.asarray(U)
    lam, V = student_spectrum(model, Wx, backend=be)
    c = model.gram(Wx, Ux) @ be.asarray(coef)
    m = model.target_moments(Wx)
    return to_numpy(losses_from_spectrum(lam, V, c, m, model.target_norm2, be.asarray(ts)))
