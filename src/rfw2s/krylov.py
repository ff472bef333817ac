"""Exact student loss curves without an eigendecomposition: Lanczos (Gauss) quadrature
(SPEC section 7; Golub & Meurant, *Matrices, Moments and Quadrature*).

The loss needs only quadratic forms of functions of ``H = G_ST / M``::

    L_ST(t) = F + (1/M) [ c^T f1(H) c - 2 c^T f2(H) m ],  f1 = g_t^2 lam,  f2 = g_t,

and ``c^T f2 m = (q(c + m) - q(c - m)) / 4`` by polarisation. ``k`` Lanczos steps from
``v / |v|`` give the tridiagonal ``T_k = S diag(theta) S^T`` and ``v^T f(H) v ~ |v|^2 sum_i
S[0, i]^2 f(theta_i)``, exact for polynomials of degree ``< 2k``. Every ``t`` reuses the
same ``T_k``; all vectors (three per teacher) run in lockstep, so each step is one product
``H @ X``, the only access to ``H`` (which may be built tile by tile, never stored).
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


def _quadrature(alpha, beta, norms2, lanes, f_values):
    """Gauss quadrature ``|v|^2 sum_i S[0, i]^2 f(theta_i)`` for each lane (host arrays).

    ``alpha``, ``beta``: (k, lanes) recurrence coefficients; ``f_values(theta)`` maps Ritz
    values (lanes, k) to (lanes, T, k) function values. Returns (lanes, T).
    """
    k = alpha.shape[0]
    T = np.zeros((lanes, k, k))
    idx = np.arange(k)
    T[:, idx, idx] = alpha.T
    T[:, idx[:-1], idx[1:]] = beta[: k - 1].T
    T[:, idx[1:], idx[:-1]] = beta[: k - 1].T
    theta, S = np.linalg.eigh(T)  # (lanes, k), (lanes, k, k)
    theta = np.maximum(theta, 0.0)  # H is PSD: negative Ritz values are round-off
    weights = norms2[:, None] * S[:, 0, :] ** 2  # (lanes, k)
    return np.einsum("lk,ltk->lt", weights, f_values(theta))


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
    V0 = xp.concatenate([c, c + m[:, None], c - m[:, None]], axis=1)  # (M, 3n)
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

    def g_values(theta):  # (n, k) Ritz values -> g_t(theta), shape (n, T, k)
        return growth(ts, theta.reshape(-1)).reshape(len(ts), *theta.shape).transpose(1, 0, 2)

    def curves(k):
        def group(i, f):
            lanes_i = slice(i * n, (i + 1) * n)
            return _quadrature(alpha[:k, lanes_i], beta[:k, lanes_i], norms2[lanes_i], n, f)

        quad = group(0, lambda th: g_values(th) ** 2 * th[:, None, :])  # c^T g^2 H c
        plus, minus = group(1, g_values), group(2, g_values)  # (c +- m)^T g (c +- m)
        return F + (quad - (plus - minus) / 2.0) / M

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
