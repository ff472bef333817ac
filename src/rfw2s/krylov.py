"""Exact student loss curves without an eigendecomposition: Lanczos (Gauss) quadrature
(SPEC section 7; Golub & Meurant, *Matrices, Moments and Quadrature*).

The loss needs only quadratic forms of functions of ``H = G_ST / M``::

    L_ST(t) = F + (1/M) [ c^T f1(H) c - 2 c^T f2(H) m ],  f1 = g_t^2 lam,  f2 = g_t,

and ``c^T f2 m = (q(c + m) - q(c) - q(m)) / 2`` by polarisation, with ``q(v) = v^T f2 v``.
``k`` Lanczos steps from ``v / |v|`` give the tridiagonal ``T_k = S diag(theta) S^T`` and
``v^T f(H) v ~ |v|^2 sum_i S[0, i]^2 f(theta_i)``, exact for polynomials of degree ``< 2k``.
Every ``t`` reuses the same ``T_k``; all vectors (``c`` and ``c + m`` per teacher, and one
``m`` for all: ``2 n + 1`` lanes, where ``c +- m`` would take ``3 n``) run in lockstep, so
each step is one product ``H @ X``, the only access to ``H`` (which may be built tile by
tile, never stored).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .backend import array_namespace, to_numpy
from .solve import SolverError, growth

log = logging.getLogger("rfw2s")

# Steps between convergence checks: the curve at k steps is compared with k - CHECK_EVERY.
CHECK_EVERY = 10


@dataclass(frozen=True)
class KrylovCurves:
    losses: np.ndarray  # (n_teachers, len(ts))
    steps: int  # Lanczos steps taken
    achieved_tol: float  # max relative change of the curves over the last CHECK_EVERY steps
    converged: bool  # achieved_tol <= the requested tolerance


def _gauss_rules(alpha, beta, norms2):
    """Gauss quadrature nodes and weights of every lane (host arrays): ``v^T f(H) v ~
    sum_i weights[l, i] f(nodes[l, i])``.

    ``alpha``, ``beta``: (k, lanes) recurrence coefficients; ``norms2``: ``|v|^2`` per lane.
    Returns nodes and weights, each (lanes, k).
    """
    k, lanes = alpha.shape
    T = np.zeros((lanes, k, k))
    idx = np.arange(k)
    T[:, idx, idx] = alpha.T
    T[:, idx[:-1], idx[1:]] = beta[: k - 1].T
    T[:, idx[1:], idx[:-1]] = beta[: k - 1].T
    theta, S = np.linalg.eigh(T)  # (lanes, k), (lanes, k, k)
    theta = np.maximum(theta, 0.0)  # H is PSD: negative Ritz values are round-off
    return theta, norms2[:, None] * S[:, 0, :] ** 2


def lanczos_curves(matvec, M: int, c, m, F: float, ts, *, tol: float = 1e-10, max_steps: int = 400,
                   min_steps: int = 20) -> KrylovCurves:
    """Exact-to-``tol`` student loss curves for the teachers in the columns of ``c``.

    ``matvec(X)`` returns ``H @ X`` for an ``(M, lanes)`` block; ``c`` is ``(M, n)`` (``E[phi_j
    f_TE]`` per teacher), ``m`` is ``(M,)`` (``E[phi_j f*]``). Steps are added until the curves
    change by less than ``tol`` (relative, every ``t``) over the last ``CHECK_EVERY`` steps, or
    ``max_steps`` is reached; the result says which, and never holds NaN.
    """
    xp = array_namespace(c)
    ts = np.asarray(ts, float)
    n = c.shape[1]
    V0 = xp.concatenate([c, c + m[:, None], m[:, None]], axis=1)  # (M, 2n + 1)
    lanes = V0.shape[1]
    norms = xp.sqrt(xp.sum(V0 * V0, axis=0))
    norms2 = to_numpy(norms) ** 2
    q = V0 / xp.where(norms > 0, norms, 1.0)
    max_steps = min(max_steps, M)
    Q = xp.zeros((max_steps, M, lanes))
    alpha = np.zeros((max_steps, lanes))
    beta = np.zeros((max_steps, lanes))
    scale = None
    previous, achieved = None, np.inf

    def curves(k):
        theta, weights = _gauss_rules(alpha[:k], beta[:k], norms2)
        g = growth(ts, theta.reshape(-1)).reshape(len(ts), *theta.shape).transpose(1, 0, 2)  # (lanes, T, k)
        q = np.einsum("lk,ltk->lt", weights, g)  # v^T g v for every lane
        quad = np.einsum("lk,ltk->lt", weights[:n], g[:n] ** 2 * theta[:n, None, :])  # c^T g^2 H c
        cross = (q[n:2 * n] - q[:n] - q[2 * n]) / 2.0  # c^T g m
        return F + (quad - 2.0 * cross) / M

    for k in range(max_steps):
        Q[k] = q
        w = matvec(q)
        a = xp.sum(q * w, axis=0)
        # Full re-orthogonalisation against this lane's earlier vectors, twice.
        for _ in range(2):
            coeff = xp.einsum("kml,ml->kl", Q[: k + 1], w)
            w = w - xp.einsum("kml,kl->ml", Q[: k + 1], coeff)
        b = xp.sqrt(xp.sum(w * w, axis=0))
        alpha[k], beta[k] = to_numpy(a), to_numpy(b)
        if not (np.all(np.isfinite(alpha[k])) and np.all(np.isfinite(beta[k]))):
            raise SolverError(f"Lanczos produced non-finite coefficients at step {k + 1} (M = {M}, "
                              f"backend {xp.__name__})")
        scale = max(scale or 0.0, float(np.max(np.abs(alpha[k]))))
        # Breakdown: the Krylov space is invariant and the quadrature already exact; a zero
        # vector decouples T, and its further nodes get zero weight.
        live = b > 1e-14 * scale
        q = xp.where(live, w / xp.where(live, b, 1.0), 0.0)
        steps = k + 1
        if steps >= min_steps and (steps % CHECK_EVERY == 0 or steps == max_steps):
            current = curves(steps)
            if previous is not None:
                achieved = float(np.max(np.abs(current - previous) / np.abs(current)))
                log.info("Lanczos step %d of at most %d: curves changed by %.2e (target %.0e)",
                         steps, max_steps, achieved, tol)
                if achieved <= tol:
                    return KrylovCurves(current, steps, achieved, True)
            previous = current
    current = curves(steps)
    if not np.all(np.isfinite(current)):
        raise SolverError(f"Lanczos quadrature gave non-finite losses (M = {M}, {steps} steps)")
    return KrylovCurves(current, steps, achieved, achieved <= tol)
