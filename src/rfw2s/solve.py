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


def fit_teacher(model, U, samples=None, ridge: float = 0.0, *, backend="numpy") -> TeacherFit:
    """The converged teacher: least squares of ``f*`` on the teacher's features, on the
    population (``samples=None``) or on the inputs ``samples`` (``n x d``), with the penalty
    ``ridge/2 |coef|^2`` (0: the minimum-norm solution); ``.loss`` is always the population
    ``L_TE = F - 2 coef . m_TE + coef^T G_TE coef``.

    Minimum norm through an eigendecomposition with a relative cut-off (the population's
    ``G_TE``, or the sample's ``Phi^T Phi / n``), so a singular or ill-conditioned problem
    (duplicate features, fewer inputs than features) gives the function of its well-posed
    reduction instead of NaNs.
    """
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"the teacher's ridge penalty must be a number >= 0; got {ridge!r}")
    be = as_backend(backend)
    Ux = be.asarray(U)
    G = model.gram(Ux, Ux)
    m = model.target_moments(Ux)
    F = model.target_norm2
    if samples is None:
        system, rhs = G, m  # the normal equations of the population: G coef = m
    else:
        X = be.asarray(samples)
        Phi = model.features(X, Ux)
        system, rhs = Phi.T @ Phi / X.shape[0], Phi.T @ model.target(X) / X.shape[0]
    w, V = symmetric_eigh(system, be)
    keep = (w > relative_cutoff(w, system.shape[0])) | (ridge > 0)
    proj = V.T @ rhs
    coef = V @ be.xp.where(keep, proj / be.xp.where(keep, w + ridge, 1.0), 0.0)
    if samples is None and ridge == 0:
        loss = F - float(m @ coef)
    else:
        loss = F - 2.0 * float(m @ coef) + float(coef @ G @ coef)
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


def student_losses(model, W, U, coef, grid, rule: str = "gradient_flow", step=None, samples=None, *,
                   backend="numpy") -> np.ndarray:
    """Exact population loss of the student ``W`` trained on the teacher ``(U, coef)``, one
    value per grid value.

    ``rule``: ``"gradient_flow"`` (``grid``: times ``t``), ``"gradient_descent"`` (``grid``: step
    counts, ``step``: the step ``eta``, refused at or above ``2 / lam_max``) or ``"ridge"``
    (``grid``: penalties ``mu``). ``samples``: ``None`` (trained on the population) or an
    ``n x d`` NumPy array of inputs, labelled by the teacher. Dense solvers (eigh; the thin SVD
    of the sample). Inputs are NumPy arrays (feature directions as rows); returns NumPy.
    """
    be = as_backend(backend)
    parameters = {"eta": step} if rule == "gradient_descent" else {}
    if step is not None and rule != "gradient_descent":
        raise ValueError(f"a step is a gradient-descent parameter; rule {rule!r} takes none")
    filt = learning_rule(rule, grid, **parameters)
    if samples is not None:
        from .finite_sample import sample_curves

        return sample_curves(model, W, [(U, coef)], filt, np.asarray(samples, float), operator="svd",
                             backend=be).losses[0]
    Wx, Ux = be.asarray(W), be.asarray(U)
    lam, V = student_spectrum(model, Wx, backend=be)
    c = model.gram(Wx, Ux) @ be.asarray(coef)
    m = model.target_moments(Wx)
    filt = filt.bind(float(lam.max()))
    return to_numpy(losses_from_spectrum(lam, V, c, m, model.target_norm2, filt))
