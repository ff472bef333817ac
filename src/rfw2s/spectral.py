"""Spectrum of the ReLU kernel on the sphere and the infinite-width student (SPEC section 3).

Funk-Hecke: ``kappa(rho) = sum_k lam_k N(d, k) P_k(rho)`` with ``P_k`` the Gegenbauer
polynomial of ``S^{d-1}`` normalised to ``P_k(1) = 1``, ``lam_k = c_k^2`` and
``c_k = E[relu(s) P_k(s)]``, ``s`` the first coordinate of ``x ~ Unif(S^{d-1})``.

``c_k`` in closed form (``nu = (d - 3) / 2``, ``Z = int_{-1}^{1} (1 - s^2)^nu ds``):
Rodrigues' formula ``P_k(s) (1 - s^2)^nu = R_k D^k (1 - s^2)^(k + nu)`` with
``R_k = (-1)^k Gamma(nu + 1) / (2^k Gamma(k + nu + 1))``, and two integrations by parts
of ``int_0^1 s D^k (1 - s^2)^(k + nu) ds`` leave ``D^(k-2) (1 - s^2)^(k + nu)`` at 0. Hence
``c_0 = 1 / (2 (nu + 1) Z)``, ``c_1 = 1 / (2d)``, ``c_k = 0`` for odd ``k >= 3`` and, for even
``k >= 2``, ``c_k = R_k (k-2)! (-1)^((k-2)/2) binom(k + nu, (k-2)/2) / Z``, evaluated in logs.
"""
from __future__ import annotations

import math

import numpy as np

from .backend import array_namespace, to_numpy


def harmonic_dimension(d: int, k: int) -> int:
    """``N(d, k)``: dimension of the degree-``k`` spherical harmonics on ``S^{d-1}``."""
    if k == 0:
        return 1
    return (2 * k + d - 2) * math.comb(k + d - 3, k - 1) // k


def gegenbauer(K: int, d: int, s):
    """``P_0 .. P_K`` at ``s`` (any shape), normalised ``P_k(1) = 1``; stacked on axis 0."""
    xp = array_namespace(s)
    P = [xp.ones_like(s), s]
    for k in range(1, K):
        P.append(((2 * k + d - 2) * s * P[k] - k * P[k - 1]) / (k + d - 2))
    return xp.stack(P[: K + 1])


def relu_coefficients(d: int, K: int) -> np.ndarray:
    """``c_0 .. c_K`` of ``relu`` in the Gegenbauer basis of ``S^{d-1}`` (closed form)."""
    nu = (d - 3) / 2
    log_Z = 0.5 * math.log(math.pi) + math.lgamma(nu + 1) - math.lgamma(nu + 1.5)
    c = np.zeros(K + 1)
    c[0] = math.exp(-math.log(2 * (nu + 1)) - log_Z)
    if K >= 1:
        c[1] = 1.0 / (2 * d)
    for k in range(2, K + 1, 2):
        j = (k - 2) // 2
        log_R = math.lgamma(nu + 1) - k * math.log(2) - math.lgamma(k + nu + 1)
        log_binom = math.lgamma(k + nu + 1) - math.lgamma(j + 1) - math.lgamma(k + nu - j + 1)
        sign = (-1) ** k * (-1) ** j
        c[k] = sign * math.exp(log_R + math.lgamma(k - 1) + log_binom - log_Z)
    return c


def relu_eigenvalues(d: int, K: int) -> np.ndarray:
    """``lam_k = c_k^2``: eigenvalue of the kernel operator on degree ``k`` (multiplicity ``N(d,k)``)."""
    return relu_coefficients(d, K) ** 2


def kappa_series(rho, d: int, K: int):
    """Funk-Hecke partial sum ``sum_{k <= K} lam_k N(d, k) P_k(rho)``."""
    weights = relu_eigenvalues(d, K) * np.array([harmonic_dimension(d, k) for k in range(K + 1)], float)
    P = gegenbauer(K, d, rho)
    xp = array_namespace(rho)
    return xp.tensordot(xp.asarray(weights), P, axes=1)


def teacher_degree_energies(model, U, coef, K: int) -> tuple[np.ndarray, float]:
    """``A_k = lam_k N(d,k) coef^T P_k(U U^T) coef`` for ``k <= K``, and ``|f_TE|^2``."""
    xp = array_namespace(U)
    rho = xp.clip(U @ U.T, -1.0, 1.0)
    P = gegenbauer(K, model.d, rho)
    coef = xp.asarray(coef)
    quad = to_numpy(xp.einsum("i,kij,j->k", coef, P, coef))
    N = np.array([harmonic_dimension(model.d, k) for k in range(K + 1)], float)
    A = relu_eigenvalues(model.d, K) * N * quad
    norm2 = float(to_numpy(coef @ model.gram(U, U) @ coef))
    return A, norm2


def student_losses_infinite(model, U, coef, ts, K: int = 40, return_residual: bool = False):
    """Exact infinite-width ``L_ST_inf(t) = F + sum_k (e_k^2 A_k - 2 e_k B_k)``, ``e_k = 1 - exp(-t lam_k)``.

    Only degree 1 meets the linear target: ``B_1 = m_TE . coef``. Degrees above ``K`` carry
    ``|f_TE|^2 - sum_k A_k`` (returned as ``residual`` when asked): an upper bound on what the
    truncation can leave out of the loss.
    """
    U = np.asarray(U, float)
    coef = np.asarray(coef, float)
    A, norm2 = teacher_degree_energies(model, U, coef, K)
    lam = relu_eigenvalues(model.d, K)
    B = np.zeros(K + 1)
    B[1] = float(model.target_moments(U) @ coef)
    ts = np.asarray(ts, float).reshape(-1, 1)
    e = -np.expm1(-ts * lam)
    L = model.target_norm2 + (e * e) @ A - 2.0 * e @ B
    residual = max(norm2 - float(A.sum()), 0.0)
    return (L, residual) if return_residual else L
