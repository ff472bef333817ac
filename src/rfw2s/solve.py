"""The teacher's fit and the exact finite-width student by dense eigendecomposition.

Conventions: ``f = M^{-1/2} sum_j theta_j phi_j``, loss ``1/2 E[(f - y)^2]``, training from
``theta = 0``. The converged teacher is the population least-squares fit of ``f*`` on its
features; the student trained on the teacher's labels by a learning rule (a spectral filter,
:mod:`rfw2s.spectral`) has the loss :func:`rfw2s.spectral.loss_in_eigenbasis` in the
eigenbasis of ``H = G_ST / M``: one eigendecomposition per student draw serves every teacher
and every grid value.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import Backend, array_namespace, as_backend, to_numpy
from .spectral import learning_rule, loss_in_eigenbasis, relative_cutoff

# Bump when a change alters the numbers a step produces: each is part of the key of the
# artifacts that step writes, so exactly the stale ones are computed again.
TEACHERS_VERSION = "1"  # fit_teacher
EIGH_VERSION = "2"  # spectrum_of_gram

# LAPACK's eigh (NumPy, 32-bit workspace indexing) fails for n >= 32767.
NUMPY_EIGH_MAX_N = 32766


class SolverError(RuntimeError):
    """A linear-algebra step failed; the message names the size and backend."""


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
    well-posed reduction instead of NaNs; ``L_TE = F - m_TE . coef``.
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


def losses_from_spectrum(lam, V, c, m, F: float, rule):
    """Exact student loss from the spectrum ``(lam, V)`` of ``H``, for the learning ``rule``.

    ``c`` is ``E[phi_j f_TE]`` for the student features, shape ``(M,)`` or ``(M, n_teachers)``
    (all teachers of one student draw in one pass); ``m`` is ``E[phi_j f*]``. Returns
    ``(len(grid),)`` or ``(n_teachers, len(grid))`` in the library of ``lam``.
    """
    xp = array_namespace(lam, V)
    M = lam.shape[0]
    single = c.ndim == 1
    C = c.reshape(M, -1)
    out = loss_in_eigenbasis(rule, lam, V.T @ C, V.T @ m, F, M)
    if not bool(xp.all(xp.isfinite(out))):
        raise SolverError(f"non-finite student loss (M_ST = {M}); check the grid and inputs")
    return out[0] if single else out


def student_losses(model, W, U, coef, grid, rule: str = "gradient_flow", *, backend="numpy") -> np.ndarray:
    """Exact finite-width population loss of the student ``W`` trained on the teacher
    ``(U, coef)`` by ``rule`` (``"gradient_flow"``: ``grid`` holds times ``t``), one value per
    grid value. Inputs are NumPy arrays (feature directions as rows); returns a NumPy array.
    """
    be = as_backend(backend)
    Wx, Ux = be.asarray(W), be.asarray(U)
    lam, V = student_spectrum(model, Wx, backend=be)
    c = model.gram(Wx, Ux) @ be.asarray(coef)
    m = model.target_moments(Wx)
    return to_numpy(losses_from_spectrum(lam, V, c, m, model.target_norm2, learning_rule(rule, grid)))
