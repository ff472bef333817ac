"""Targets of ReLU features, by their profile on the sphere.

A target is ``f*(x) = |x| g(x / |x|) + b_0``: a *profile* ``g`` on the sphere, extended to
other radii by degree-1 homogeneity (which every ReLU feature has: ``relu(<u, x>) = |x|
relu(<u, x/|x|>)``), and a constant ``b_0`` (only a ReLU network target centred has one). On
the sphere ``f* = g + b_0``. Each profile gives, in closed form on the sphere, what the model
and the infinite-width student need: its moments against a feature, its mean and energy, and
its degree-``k`` parts (Funk-Hecke, notation of :mod:`.spectrum`):

* ``linear``: ``g(x) = <beta, x>``, all in degree 1 (``a_1 = 1/sqrt(d)``);
* ``harmonics``: ``g(x) = sum_k a_k sqrt(N_k) P_k(<beta, x>)``, energy ``a_k^2`` in degree ``k``;
* ``relu_network``: ``g(x) = sum_j beta_j relu(<vh_j, x>)`` with ``vh_j = v_j / |v_j|``,
  ``beta_j = b_j |v_j|`` (so ``f* = sum_j b_j relu(<v_j, x>) + b_0`` for any ``v_j``).
"""
from __future__ import annotations

import math

import numpy as np

from ...backend import array_namespace
from .kernel import kappa
from .spectrum import degree_weights, gegenbauer, gegenbauer_forms, harmonic_dimension, relu_coefficients

KINDS = ("linear", "harmonics", "relu_network")
# Rounding allowed in an energy known only as a difference of sums (64 ulps of the total).
_ROUNDING = 64 * np.finfo(float).eps


def _unit(beta, d: int) -> np.ndarray:
    beta = np.asarray(beta, dtype=np.float64)
    if beta.shape != (d,) or not np.all(np.isfinite(beta)) or not np.any(beta):
        raise ValueError(f"relu_sphere: beta must be a finite non-zero vector of length d={d}")
    return beta / np.linalg.norm(beta)


class LinearProfile:
    """``g(x) = <beta, x>`` (``beta`` as given: ``|beta| = 1`` for the paper's target)."""

    kind = "linear"
    constant = 0.0

    def __init__(self, d: int, beta):
        self.d = d
        self.beta = beta

    def moments(self, A):
        """``E[relu(<a, x>) g(x)] = <a, beta> / (2d)`` for unit rows ``a``."""
        return A @ array_namespace(A).asarray(self.beta) / (2.0 * self.d)

    def values(self, X):
        return X @ array_namespace(X).asarray(self.beta)

    @property
    def mean(self) -> float:
        return 0.0

    @property
    def energy(self) -> float:
        return float(self.beta @ self.beta) / self.d

    def overlaps(self, U, coef, K: int) -> np.ndarray:
        """``<P_k h, P_k g>`` for ``h = sum_i coef_i relu(<u_i, .>)``, ``k <= K``: degree 1 only."""
        C = np.zeros(K + 1)
        C[1] = float(np.asarray(self.moments(np.asarray(U, float))) @ np.asarray(coef, float))
        return C

    def energies(self, K: int) -> np.ndarray:
        D = np.zeros(K + 1)
        D[1] = self.energy
        return D

    def tail_energy(self, K: int) -> float:
        """``|g|^2 - sum_{k <= K} |P_k g|^2``: exactly zero here from degree 1 on."""
        return 0.0 if K >= 1 else self.energy


class HarmonicProfile:
    """``g(x) = sum_k a_k sqrt(N_k) P_k(<beta, x>)`` for a unit ``beta``."""

    kind = "harmonics"
    constant = 0.0

    def __init__(self, d: int, beta, coefficients: dict):
        self.d = d
        self.beta = _unit(beta, d)
        self.degrees = np.array(sorted(int(k) for k in coefficients), dtype=np.int64)
        self.a = np.array([float(coefficients[k]) for k in sorted(coefficients, key=int)])
        if np.any(self.degrees < 0) or not np.all(np.isfinite(self.a)) or not np.any(self.a):
            raise ValueError(f"harmonics: degrees must be integers >= 0 and coefficients finite, not all zero; "
                             f"got {coefficients}")
        self.top = int(self.degrees.max())
        self.weights = self.a * np.sqrt([harmonic_dimension(d, int(k)) for k in self.degrees])

    def _series(self, s, factors):
        """``sum_k factors_k P_k(s)`` over the target's degrees."""
        xp = array_namespace(s)
        P = gegenbauer(self.top, self.d, s)
        return xp.tensordot(xp.asarray(factors), P[self.degrees.tolist()], axes=1)

    def moments(self, A):
        """``E[relu(<a, x>) g(x)] = sum_k a_k sqrt(N_k) c_k P_k(<a, beta>)`` for unit rows ``a``."""
        c = relu_coefficients(self.d, self.top)[self.degrees]
        return self._series(A @ array_namespace(A).asarray(self.beta), self.weights * c)

    def values(self, X):
        return self._series(X @ array_namespace(X).asarray(self.beta), self.weights)

    @property
    def mean(self) -> float:
        return float(self.a[self.degrees == 0].sum())

    @property
    def energy(self) -> float:
        return float(self.a @ self.a)

    def overlaps(self, U, coef, K: int) -> np.ndarray:
        """``<P_k h, P_k g> = a_k sqrt(N_k) c_k sum_i coef_i P_k(<u_i, beta>)``."""
        C = np.zeros(K + 1)
        keep = self.degrees <= K
        if keep.any():
            P = gegenbauer(K, self.d, np.asarray(U, float) @ self.beta)  # (K + 1, M_TE)
            c = relu_coefficients(self.d, K)
            k = self.degrees[keep]
            C[k] = self.weights[keep] * c[k] * (P[k] @ np.asarray(coef, float))
        return C

    def energies(self, K: int) -> np.ndarray:
        D = np.zeros(K + 1)
        keep = self.degrees <= K
        D[self.degrees[keep]] = self.a[keep] ** 2
        return D

    def tail_energy(self, K: int) -> float:
        return float((self.a[self.degrees > K] ** 2).sum())

    @property
    def invisible_energy(self) -> float:
        """Energy in the degrees no ReLU feature sees (odd ``k >= 3``, where ``c_k = 0``)."""
        odd = (self.degrees >= 3) & (self.degrees % 2 == 1)
        return float((self.a[odd] ** 2).sum())


class ReluNetworkProfile:
    """``g(x) = sum_j beta_j relu(<vh_j, x>)`` (``vh_j`` unit), with the constant ``b_0`` of
    the target beside it."""

    kind = "relu_network"

    def __init__(self, d: int, directions, weights, constant: float = 0.0):
        V = np.asarray(directions, dtype=np.float64)
        b = np.asarray(weights, dtype=np.float64).reshape(-1)
        if V.ndim != 2 or V.shape[1] != d or V.shape[0] != b.size or b.size == 0:
            raise ValueError(f"relu_network: directions must be (W, d={d}) and weights (W,); got {V.shape}, "
                             f"{b.shape}")
        norms = np.linalg.norm(V, axis=1)
        if not (np.all(np.isfinite(V)) and np.all(np.isfinite(b)) and np.all(norms > 0)):
            raise ValueError("relu_network: directions must be finite and non-zero, weights finite")
        self.d = d
        self.directions = V / norms[:, None]
        self.beta = b * norms
        self.constant = float(constant)

    def moments(self, A):
        """``E[relu(<a, x>) g(x)] = sum_j beta_j kappa(<a, vh_j>)`` for unit rows ``a``."""
        xp = array_namespace(A)
        return kappa(A @ xp.asarray(self.directions).T, self.d) @ xp.asarray(self.beta)

    def values(self, X):
        xp = array_namespace(X)
        return xp.maximum(X @ xp.asarray(self.directions).T, 0.0) @ xp.asarray(self.beta)

    @property
    def mean(self) -> float:
        return float(relu_coefficients(self.d, 0)[0] * self.beta.sum())

    @property
    def energy(self) -> float:
        return float(self.beta @ kappa(self.directions @ self.directions.T, self.d) @ self.beta)

    def overlaps(self, U, coef, K: int) -> np.ndarray:
        """``<P_k h, P_k g> = lam_k N_k coef^T P_k(U Vh^T) beta``."""
        return degree_weights(self.d, K) * gegenbauer_forms(U, self.directions, coef, self.beta, self.d, K)

    def energies(self, K: int) -> np.ndarray:
        return degree_weights(self.d, K) * gegenbauer_forms(self.directions, self.directions, self.beta, self.beta,
                                                          self.d, K)

    def tail_energy(self, K: int) -> float:
        """Known as the energy less the degrees summed, with room for its rounding."""
        return max(self.energy - float(self.energies(K).sum()), 0.0) + _ROUNDING * self.energy


def relu_network_target(d: int, directions, weights, center: bool, normalize: bool, radial_mean: float,
                        radial_power: float):
    """The profile of ``f* = sum_j b_j relu(<v_j, x>) + b_0``, centred (``b_0 = -E[sum_j b_j
    relu(<v_j, x>)]``) and normalised to unit variance where asked, for inputs whose radius has
    mean ``radial_mean`` (``E|x|``) and second moment ``radial_power`` (``E|x|^2``)."""
    profile = ReluNetworkProfile(d, directions, weights)
    b0 = -radial_mean * profile.mean if center else 0.0
    if normalize:
        variance = (radial_power * profile.energy + 2.0 * b0 * radial_mean * profile.mean + b0**2
                    - (radial_mean * profile.mean + b0) ** 2)
        if not variance > 0:
            raise ValueError("relu_network: the target has no variance to normalise")
        scale = 1.0 / math.sqrt(variance)
        profile = ReluNetworkProfile(d, directions, np.asarray(weights, float) * scale)
        b0 *= scale
    profile.constant = b0
    return profile
