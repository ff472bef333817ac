"""Learning rules as spectral filters, the loss of a filtered student in an eigenbasis, and
the infinite-width student of any model that has one.

The student's top layer, ``f = M^{-1/2} sum_j theta_j phi_j`` trained from ``theta = 0`` on
the loss ``1/2 E[(f - y)^2]``, ends at ``theta = phi(H) b`` for a *filter* ``phi`` of the
kernel ``H = G / M`` (``b = c / sqrt(M)``, ``c_j = E[phi_j f_TE]``). With
``H = V diag(lam) V^T``, ``c^ = V^T c`` and ``m^ = V^T m`` (``m_j = E[phi_j f*]``), its
population loss is::

    L = F + (1/M) sum_k [ phi(lam_k)^2 lam_k c^_k^2 - 2 phi(lam_k) c^_k m^_k ]

(:func:`loss_in_eigenbasis`: the dense solver calls it with the eigenpairs of ``H``, Lanczos
quadrature with the Ritz pairs of its tridiagonal matrix). A filter also gives each mode's
*progress* ``e(lam) = lam phi(lam)``, the fraction of a mode's coefficient the student has
learnt, which is all an infinite-width solution needs.

A filter holds its grid (the values of its own parameter, one loss each) and evaluates
``phi`` on every grid value and eigenvalue at once, in the array library of the eigenvalues.
"""
from __future__ import annotations

import numpy as np

from .backend import array_namespace


def relative_cutoff(eigvals, n: int) -> float:
    """Eigenvalues at or below this are numerically zero (pseudo-inverse convention)."""
    xp = array_namespace(eigvals)
    return float(xp.max(xp.abs(eigvals))) * n * np.finfo(np.float64).eps


class GradientFlow:
    """Gradient flow ``d theta/dt = -grad`` for time ``t``:
    ``phi(lam) = (1 - exp(-t lam)) / lam`` (``= t`` at ``lam = 0``).

    At ``t = inf`` it is the pseudo-inverse: ``1/lam`` on eigenvalues above the relative
    cut-off and 0 below (gradient flow never moves in the null space)."""

    name = "gradient_flow"
    axis = "t"  # the grid's column in the tables

    def __init__(self, t):
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if np.any(np.isnan(t)) or np.any(t < 0):
            raise ValueError("gradient-flow times t must be non-negative numbers")
        self.grid = t

    def __call__(self, lam):
        """``phi`` at every time (rows) and eigenvalue (columns): ``-expm1(-t lam) / lam``."""
        xp = array_namespace(lam)
        ts = xp.asarray(self.grid, dtype=xp.float64).reshape(-1, 1)
        lam = lam.reshape(1, -1)
        positive = lam > 0
        safe = xp.where(positive, lam, 1.0)
        finite_t = xp.where(xp.isinf(ts), 0.0, ts)
        g = xp.where(positive, -xp.expm1(-finite_t * lam) / safe, finite_t)
        if bool(np.any(np.isinf(self.grid))):
            invertible = lam > relative_cutoff(lam, lam.shape[1])
            g_inf = xp.where(invertible, 1.0 / xp.where(invertible, lam, 1.0), 0.0)
            g = xp.where(xp.isinf(ts), g_inf, g)
        return g

    def progress(self, lam):
        """``e(lam) = 1 - exp(-t lam)`` at every time (rows) and eigenvalue (columns)."""
        lam = np.asarray(lam, dtype=np.float64).reshape(1, -1)
        with np.errstate(invalid="ignore"):  # inf * 0, replaced below
            e = -np.expm1(-self.grid[:, None] * lam)
        return np.where(lam > 0, e, 0.0)  # t = inf on a zero mode: nothing learnt, not NaN

    def progress_bound(self, lam):
        """``min(1, t lam) >= e(lam')`` for every ``0 <= lam' <= lam`` (a truncated series'
        error bound), at every time (rows) and eigenvalue (columns, or a scalar's one)."""
        lam = np.asarray(lam, dtype=np.float64)
        with np.errstate(invalid="ignore"):  # inf * 0, replaced below
            bound = np.minimum(1.0, np.multiply.outer(self.grid, lam))
        return np.where(lam > 0, bound, 0.0)


RULES = {GradientFlow.name: GradientFlow}


def learning_rule(name: str, grid, **parameters):
    """The filter of the learning rule ``name`` at the values ``grid`` of its parameter."""
    if name not in RULES:
        raise ValueError(f"unknown learning rule {name!r}; known: {', '.join(RULES)}")
    return RULES[name](grid, **parameters)


def log_grid(spec: dict) -> np.ndarray:
    """``{min, max, num}``: log-spaced values, both ends included (a config's grid)."""
    return np.geomspace(float(spec["min"]), float(spec["max"]), int(spec["num"]))


def loss_in_eigenbasis(rule, lam, c_hat, m_hat, F: float, M: int):
    """``L`` of the student filtered by ``rule``, for every teacher and grid value.

    ``lam`` (``k``,) are eigenvalues of ``H`` (or Ritz values); ``c_hat`` (``k, n``) holds each
    teacher's ``c`` in that eigenbasis, ``m_hat`` (``k``,) the target's ``m``; ``F = E[f*^2]``.
    Returns ``(n, len(rule.grid))``, in the array library of ``lam``.
    """
    g = rule(lam)  # (T, k)
    quad = (g * g * lam) @ (c_hat * c_hat)  # (T, n): c^T phi(H)^2 H c
    cross = g @ (c_hat * m_hat[:, None])  # (T, n): c^T phi(H) m
    return (F + (quad - 2.0 * cross) / M).T


def student_losses_infinite(model, U, coef, ts) -> np.ndarray:
    """Exact infinite-width (``M_ST -> inf``) student loss after gradient flow for each time in
    ``ts``, for the teacher ``(U, coef)``: the model's own infinite-width solution. Raises
    ``NotImplementedError`` for a model that has none."""
    solution = getattr(model, "infinite_width", None)
    if solution is None:
        raise NotImplementedError(f"model {model.name!r} has no infinite-width solution")
    return solution(np.asarray(U, float), np.asarray(coef, float), GradientFlow(ts)).losses
