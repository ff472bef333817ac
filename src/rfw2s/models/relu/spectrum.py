"""The ReLU kernel's spectrum on the sphere (Funk-Hecke) and the exact infinite-width student.

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

from ...backend import array_namespace
from ..interface import InfiniteWidthCurve


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


class TruncationError(ValueError):
    """The Funk-Hecke series was cut at a degree too low for the requested accuracy."""


def gegenbauer_forms(rows, columns, left, right, d: int, K: int) -> np.ndarray:
    """``left^T P_k(rows columns^T) right`` for ``k <= K`` (rows of unit vectors). The
    Gegenbauer recurrence runs on the matrix of inner products two at a time, so memory stays
    that matrix's whatever the degree."""
    rho = np.clip(np.asarray(rows, float) @ np.asarray(columns, float).T, -1.0, 1.0)
    left, right = np.asarray(left, float), np.asarray(right, float)
    forms = np.empty(K + 1)
    prev, cur = np.ones_like(rho), rho
    forms[0] = left.sum() * right.sum()
    if K >= 1:
        forms[1] = left @ rho @ right
    for k in range(1, K):
        prev, cur = cur, ((2 * k + d - 2) * rho * cur - k * prev) / (k + d - 2)
        forms[k + 1] = left @ cur @ right
    return forms


def degree_weights(d: int, K: int) -> np.ndarray:
    """``lam_k N(d, k)`` for ``k <= K``: a degree-``k`` part of ``sum_i w_i relu(<u_i, .>)`` has
    energy ``lam_k N(d, k) w^T P_k(U U^T) w``."""
    return relu_eigenvalues(d, K) * np.array([harmonic_dimension(d, k) for k in range(K + 1)], float)


def teacher_degree_energies(d: int, U, coef, K: int) -> tuple[np.ndarray, float]:
    """``A_k = lam_k N(d,k) coef^T P_k(U U^T) coef`` for ``k <= K`` (the energy on the sphere of
    the teacher's profile ``h = sum_i coef_i relu(<u_i, .>)`` in degree ``k``), and ``|h|^2``."""
    from .kernel import kappa

    U, coef = np.asarray(U, float), np.asarray(coef, float)
    A = degree_weights(d, K) * gegenbauer_forms(U, U, coef, coef, d, K)
    norm2 = float(coef @ kappa(U @ U.T, d) @ coef)
    return A, norm2


def relu_infinite_width(model, U, coef, rule, K: int | None = None, rtol: float = 1e-10,
                        K_max: int = 4096) -> InfiniteWidthCurve:
    """Exact infinite-width student of ReLU features on the sphere trained by ``rule`` (a
    filter of :mod:`rfw2s.spectral`), truncated with control.

    ``L_ST_inf = F + sum_k (e_k^2 A_k - 2 e_k B_k)`` with ``e_k = rule.progress(lam_k)``
    (``1 - exp(-t lam_k)`` for gradient flow) and only degree 1 meeting the linear target
    (``B_1 = m_TE . coef``). Degrees above ``K`` carry the residual energy
    ``|f_TE|^2 - sum_{k<=K} A_k`` and enter the loss only through ``e_k^2 A_k``, with
    ``e_k <= rule.progress_bound(lam_k)`` (``min(1, t lam_k)``), non-decreasing in ``lam``,
    and ``lam_k`` decreasing over even ``k``: so ``|error| <= progress_bound(lam_tail)^2 *
    residual`` with ``lam_tail`` the largest omitted eigenvalue. ``K=None`` doubles the degree
    until that bound is below ``rtol`` times the loss at every grid value; a given ``K`` that
    cannot meet ``rtol`` raises :class:`TruncationError`.
    """
    degree = 16 if K is None else int(K)
    while True:
        curve = _relu_infinite_width_at(model, U, coef, rule, degree)
        worst = float(np.max(curve.error_bound / np.maximum(curve.losses, np.finfo(float).tiny)))
        if worst <= rtol:
            return curve
        if K is not None or degree >= K_max:
            raise TruncationError(
                f"Gegenbauer degree {degree} leaves a relative error up to {worst:.2e} on the "
                f"infinite-width loss (requested {rtol:.0e}); "
                + ("pass K=None to choose the degree automatically" if K is not None
                   else f"the largest degree allowed is K_max = {K_max}"))
        degree = min(2 * degree, K_max)


def _relu_infinite_width_at(model, U, coef, rule, K: int) -> InfiniteWidthCurve:
    """The series to degree ``K``. On the sphere, with the teacher's profile ``h`` and the
    target's ``g + b0`` (``b0``: the sphere constant the model reduces to):
    ``A_k = |P_k h|^2``, ``C_k = <P_k h, P_k (g + b0)>``, ``D_k = |P_k (g + b0)|^2`` and
    ``L = F + sum_{k <= K} (e_k^2 A_k - 2 e_k C_k)`` with ``F = sum_k D_k``; the omitted degrees
    add ``sum_{k > K} (e_k^2 A_k - 2 e_k C_k)``, at most ``e^2 A_rest + 2 e sqrt(A_rest D_rest)``
    in size (Cauchy-Schwarz) with ``e`` the progress bound at the largest omitted eigenvalue.
    On Gaussian inputs the kernel's eigenvalues and every energy are ``E[r^2] = d`` times the
    sphere's, and the constant's radial remainder adds to the loss."""
    d, profile = model.d, model.profile
    A, norm2 = teacher_degree_energies(d, U, coef, K)
    lam = relu_eigenvalues(d, K + 2)
    C = profile.overlaps(U, coef, K)
    D = profile.energies(K)
    b0 = model.sphere_constant
    F = profile.energy
    if b0:
        c0 = relu_coefficients(d, 0)[0]
        C[0] += b0 * c0 * float(np.sum(coef))
        D[0] += 2.0 * b0 * profile.mean + b0**2
        F += 2.0 * b0 * profile.mean + b0**2
    mean, power = model.radial_moments
    e = rule.progress(power * lam[: K + 1])
    losses = F + (e * e) @ A - 2.0 * e @ C
    per_degree = (e * e * A - 2.0 * e * C + D).T
    teacher = A - 2.0 * C + D
    # Rounding in norm2 - sum(A) is allowed for, so the bound never claims more than it knows.
    A_rest = max(norm2 - float(A.sum()), 0.0) + 64 * np.finfo(float).eps * norm2
    lam_tail = lam[K + 1] if (K + 1) % 2 == 0 else lam[K + 2]  # odd degrees >= 3 vanish
    progress = rule.progress_bound(power * lam_tail)
    bound = progress**2 * A_rest + 2.0 * progress * np.sqrt(A_rest * profile.tail_energy(K))
    if power != 1.0:
        remainder = model.radial_remainder
        losses, per_degree, teacher, bound = (power * losses + remainder, power * per_degree, power * teacher,
                                              power * bound)
    return InfiniteWidthCurve(losses, K, bound, A_rest, per_degree=per_degree, teacher_per_degree=teacher)
