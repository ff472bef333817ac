"""The one-call API: the teacher's fit, and the exact curves of a student trained on a teacher or
on the truth, each through the route that fits the model (nothing below this module imports it).

Conventions: ``f = M^{-1/2} sum_j theta_j phi_j``, loss ``1/2 E[(f - y)^2]``, training from
``theta = 0``. The converged teacher is the population least-squares fit of ``f*`` on its
features; the student trained on the teacher's labels by a learning rule (a spectral filter,
:mod:`rfw2s.spectral`) has an exact loss in the eigenbasis of its training kernel
(:func:`rfw2s.spectral.evaluate`): one eigendecomposition per student draw serves every teacher,
the truth and every grid value. Routes (:mod:`rfw2s.operators`): the dense eigendecomposition of
``H = G_ST / M`` (:mod:`rfw2s.curves`), the sample's thin SVD (:mod:`rfw2s.finite_sample`), and on
a dataset with fewer rows than features the ``N x N`` kernel of the rows (:mod:`rfw2s.dual`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import as_backend, to_numpy
from .dense import EIGH_VERSION, NUMPY_EIGH_MAX_N, spectrum_of_gram, student_spectrum, symmetric_eigh
from .errors import SolverError
from .spectral import SameKernel, evaluate, learning_rule, relative_cutoff

# Bump when a change alters the numbers a step produces: each is part of the key of the
# artifacts that step writes, so exactly the stale ones are computed again.
TEACHERS_VERSION = "1"  # fit_teacher

__all__ = ["EIGH_VERSION", "NUMPY_EIGH_MAX_N", "SolverError", "TEACHERS_VERSION", "TeacherFit", "ceiling_losses",
           "fit_teacher", "losses_from_spectrum", "relative_cutoff", "spectrum_of_gram", "student_curves",
           "student_losses", "student_spectrum", "symmetric_eigh"]


@dataclass(frozen=True)
class TeacherFit:
    coef: np.ndarray  # minimum-norm coefficients, f_TE = sum_j coef_j phi(.; u_j); a column per output
    loss: float  # L_TE = E[|f_TE - f*|^2] (summed over the outputs)
    rank: int  # numerical rank of G_TE used in the pseudo-inverse


def fit_teacher(model, U, samples=None, ridge: float = 0.0, *, backend="numpy") -> TeacherFit:
    """The converged teacher: least squares of ``f*`` on the teacher's features, on the
    population (``samples=None``) or on the inputs ``samples`` (``n x d``), with the penalty
    ``ridge/2 |coef|^2`` (0: the minimum-norm solution); ``.loss`` is always the population
    ``L_TE = F - 2 coef . m_TE + coef^T G_TE coef``. ``.coef`` has one column per output of the
    target (a vector for one output).

    Minimum norm through an eigendecomposition with a relative cut-off (the population's
    ``G_TE``, or the sample's ``Phi^T Phi / n``), so a singular or ill-conditioned problem
    (duplicate features, fewer inputs than features) gives the function of its well-posed
    reduction instead of NaNs.
    """
    if not (np.isfinite(ridge) and ridge >= 0):
        raise ValueError(f"the teacher's ridge penalty must be a number >= 0; got {ridge!r}")
    be = as_backend(backend)
    xp = be.xp
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
    proj = (V.T @ rhs).reshape(len(w), -1)
    coef = (V @ xp.where(keep[:, None], proj / xp.where(keep, w + ridge, 1.0)[:, None], 0.0)).reshape(m.shape)
    if samples is None and ridge == 0:
        loss = F - float(xp.sum(m * coef))
    else:
        loss = F - 2.0 * float(xp.sum(m * coef)) + float(xp.sum(coef * (G @ coef)))
    if not np.isfinite(loss):
        raise SolverError(f"the teacher's loss is not finite (M_TE = {U.shape[0]}): non-finite features or target")
    # Cancellation can leave a loss a few ulps below zero when f* is (almost) in the span.
    tol = 64 * np.finfo(np.float64).eps * F
    if loss < -tol:
        raise SolverError(f"teacher loss {loss:.3e} is negative beyond round-off (M_TE = {U.shape[0]})")
    return TeacherFit(coef=to_numpy(coef), loss=max(loss, 0.0), rank=int(keep.sum()))


def losses_from_spectrum(lam, V, c, m, F: float, rule):
    """Exact student loss from the spectrum ``(lam, V)`` of ``H``, for the learning ``rule``.

    ``c`` is ``E[phi_j f_TE]`` for the student features, shape ``(M,)`` or ``(M, n_teachers)``
    (all teachers of one student draw in one pass); ``m`` is ``E[phi_j f*]``, one output (a target
    with several: :func:`rfw2s.curves.exact_curves`). Returns ``(len(grid),)`` or ``(n_teachers,
    len(grid))``, on the host.
    """
    if m.ndim != 1:
        raise ValueError(f"losses_from_spectrum takes a target of one output (m of shape (M,)); got {m.shape}")
    M = lam.shape[0]
    C = c.reshape(M, -1)
    losses = evaluate(rule, lam, SameKernel((V.T @ C)[:, :, None], (V.T @ m).reshape(M, 1), F, M)).losses
    return losses[0] if c.ndim == 1 else losses


def _filter(rule: str, grid, step):
    if step is not None and rule != "gradient_descent":
        raise ValueError(f"a step is a gradient-descent parameter; rule {rule!r} takes none")
    if step is None and rule == "gradient_descent":
        raise ValueError("gradient descent needs its step: student_losses(..., rule='gradient_descent', step=eta)")
    return learning_rule(rule, grid, **({"eta": step} if rule == "gradient_descent" else {}))


def student_curves(model, W, teachers, rule, samples=None, *, backend="numpy"):
    """The exact curves (:class:`rfw2s.spectral.Curves`) of the student ``W`` trained by the filter
    ``rule`` on each teacher ``(U, coef)`` and on the truth, by the dense route that fits: on a
    dataset with fewer rows than features, the rows' kernel (dual); on ``samples`` inputs, their
    thin SVD; else the eigendecomposition of ``H``."""
    from .curves import exact_curves
    from .dual import dual_curves
    from .finite_sample import sample_curves

    be = as_backend(backend)
    if samples is not None:
        return sample_curves(model, W, teachers, rule, np.asarray(samples, float), operator="svd", backend=be)
    if getattr(model, "n_rows", np.inf) < W.shape[0]:
        return dual_curves(model, W, teachers, rule, backend=be)
    return exact_curves(model, W, teachers, rule, operator="eigh", backend=be)


def student_losses(model, W, U, coef, grid, rule: str = "gradient_flow", step=None, samples=None, *,
                   backend="numpy") -> np.ndarray:
    """Exact population loss of the student ``W`` trained on the teacher ``(U, coef)``, one
    value per grid value (summed over the outputs of a target with several).

    ``rule``: ``"gradient_flow"`` (``grid``: times ``t``), ``"gradient_descent"`` (``grid``: step
    counts, ``step``: the step ``eta``, refused at or above ``2 / lam_max``) or ``"ridge"``
    (``grid``: penalties ``mu``). ``samples``: ``None`` (trained on the population) or an
    ``n x d`` NumPy array of inputs, labelled by the teacher. Dense routes (:func:`student_curves`).
    Inputs are NumPy arrays (feature directions as rows); returns NumPy.
    """
    curves = student_curves(model, W, [(U, coef)], _filter(rule, grid, step), samples, backend=backend)
    return curves.losses[0]


def ceiling_losses(model, W, grid, rule: str = "gradient_flow", step=None, *, backend="numpy") -> np.ndarray:
    """The strong ceiling: the exact population loss, at every grid value, of the student ``W``
    trained by ``rule`` on the truth instead of a teacher's labels (``m`` in place of ``c``; on a
    dataset, ``Y`` in place of the teacher's values)."""
    return student_curves(model, W, [], _filter(rule, grid, step), backend=backend).ceiling
