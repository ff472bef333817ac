"""Our reconstruction of the paper's Model 2.3: linear features, two-level spectrum.

OUR RECONSTRUCTION of the paper's second model: the paper's exact Model 2.3 text was not
available to us. What is known is that its improvement is quadratic (``L_ST ~ L_TE^2``)
and that it uses linear random features on anisotropic data. Everything that defines the
model is in this file, so a correction is a change here alone.

``phi(x; w) = <w, x>``, ``w ~ N(0, I_d)``, ``x ~ N(0, Sigma)``,
``Sigma = diag(1 (K times), eps (d - K times))``, ``f*(x) = <beta, x>`` with ``beta`` on the
spike coordinates and ``|beta| = 1``. The sizes scale with the teacher ``M_TE``:
``d = round(M_TE^dim_exponent)``, ``K = round(M_TE^spike_exponent)``,
``eps = M_TE^(-tail_exponent)`` (defaults 1.5, 0.5, 1: ``d = M_TE^1.5``, ``K = M_TE^0.5``,
``eps = 1 / M_TE``).

Two readings of the unpublished model: ours (``target: first``, the default) and that of the
public peer code ``xiwinnie/provably-weak-to-strong`` (``target: peer``, with students
``m_st: {d_power: 1.25}``): the same data law, target coefficients ``M_TE^0.75`` on the spike
and 1 on the tail, here scaled to unit energy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend import array_namespace
from .interface import InfiniteWidthCurve

NAME = "linear_spiked"
# Bump when a closed form here changes its numbers (every cached artifact is keyed by it).
VERSION = "1"
# Config parameters (JSON schema), turned into a concrete model per teacher size by
# ``specialize``.
PARAMETERS = {
    "dim_exponent": {"type": "number", "exclusiveMinimum": 0, "maximum": 4, "default": 1.5,
                     "description": "d = round(M_TE ** dim_exponent)"},
    "spike_exponent": {"type": "number", "minimum": 0, "maximum": 4, "default": 0.5,
                       "description": "K = round(M_TE ** spike_exponent) spike coordinates (<= d)"},
    "tail_exponent": {"type": "number", "minimum": 0, "maximum": 8, "default": 1.0,
                      "description": "tail eigenvalue eps = M_TE ** -tail_exponent"},
    "target": {"type": "string", "enum": ["first", "uniform", "peer"], "default": "first",
               "description": "beta: first spike coordinate, uniform over the spike, or the public peer code's "
                              "(M_TE^0.75 on each spike coordinate, 1 on each tail coordinate, unit energy)"},
}
# The peer code's spike coefficient is M_TE ** PEER_SPIKE_POWER (its tail coefficients are 1).
PEER_SPIKE_POWER = 0.75
REQUIRED: list[str] = []


def specialize(params: dict, m_te: int) -> dict:
    """The concrete model used with a teacher of ``m_te`` features."""
    p = {k: params.get(k, v["default"]) for k, v in PARAMETERS.items()}
    d = max(1, round(m_te ** p["dim_exponent"]))
    k = min(d, max(1, round(m_te ** p["spike_exponent"])))
    spec = {"name": NAME, "d": int(d), "k": int(k), "eps": float(m_te ** -p["tail_exponent"]), "target": p["target"]}
    if p["target"] == "peer":
        spec["spike_weight"] = float(m_te**PEER_SPIKE_POWER)
    return spec


@dataclass(frozen=True, eq=False)
class LinearSpiked:
    d: int
    k: int
    eps: float
    target_name: str
    sigma: np.ndarray = field(repr=False)  # diagonal of Sigma
    beta: np.ndarray = field(repr=False)
    name = NAME

    # --- population moments --------------------------------------------------------
    def gram(self, A, B):
        """``E_x[<a, x><b, x>] = a^T Sigma b`` for rows of ``A`` and ``B``."""
        xp = array_namespace(A, B)
        return (A * xp.asarray(self.sigma)) @ B.T

    def gram_into(self, A, B, out):
        """:meth:`gram` written into ``out``; for ``A is B`` (a whole kernel) the symmetric
        product ``S S^T``, ``S = A Sigma^(1/2)`` (syrk on the CPU: half the flops, exactly
        symmetric)."""
        xp = array_namespace(A, B)
        if A is B:
            S = A * xp.asarray(np.sqrt(self.sigma))
            return xp.matmul(S, S.T, out=out)
        return xp.matmul(A * xp.asarray(self.sigma), B.T, out=out)

    def target_moments(self, A):
        xp = array_namespace(A)
        return A @ xp.asarray(self.sigma * self.beta)

    @property
    def target_norm2(self) -> float:
        return float(self.beta @ (self.sigma * self.beta))

    # --- sampling ------------------------------------------------------------------
    def sample_features(self, seed, M: int) -> np.ndarray:
        return np.random.default_rng(seed).standard_normal((int(M), self.d))

    def sample_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return rng.standard_normal((int(n), self.d)) * np.sqrt(self.sigma)

    def features(self, X, A):
        return X @ A.T

    def features_into(self, X, A, out):
        """:meth:`features` written into ``out``."""
        return array_namespace(X, A).matmul(X, A.T, out=out)

    def target(self, X):
        xp = array_namespace(X)
        return X @ xp.asarray(self.beta)

    @property
    def loss_floor(self) -> float:
        """Every linear function is learnable: nothing of ``f*`` is out of reach."""
        return 0.0

    # --- infinite width --------------------------------------------------------------
    def infinite_width(self, U, coef, rule):
        """``v = e(Sigma) v_TE``, ``v_TE = U^T coef``, ``e = rule.progress`` (``1 - exp(-t Sigma)``
        for gradient flow); loss ``(v - beta)^T Sigma (v - beta)``.

        (The kernel of ``w ~ N(0, I)`` features is ``<x, x'>``, whose operator acts on linear
        functions ``<v, .>`` as ``v -> Sigma v``.) Exact: no truncation.
        """
        v_te = np.asarray(U, float).T @ np.asarray(coef, float)
        residual = rule.progress(self.sigma) * v_te - self.beta
        losses = (residual * residual) @ self.sigma
        return InfiniteWidthCurve(losses, None, np.zeros_like(losses), 0.0)


def build(d: int, k: int, eps: float, target: str = "first", spike_weight: float | None = None) -> LinearSpiked:
    """``target="peer"``: ``spike_weight`` on each spike coordinate and 1 on each tail one,
    scaled to unit energy ``beta^T Sigma beta = 1`` (the peer code leaves the scale, which grows
    with ``M_TE`` and so would tilt a log-log slope of losses against ``L_TE``)."""
    if int(d) != d or d < 1 or int(k) != k or not 1 <= k <= d:
        raise ValueError(f"{NAME}: need integers 1 <= k <= d; got d={d!r}, k={k!r}")
    if not eps > 0:
        raise ValueError(f"{NAME}: tail eigenvalue eps must be > 0; got {eps!r}")
    if target not in PARAMETERS["target"]["enum"]:
        raise ValueError(f"{NAME}: target must be one of {PARAMETERS['target']['enum']}; got {target!r}")
    d, k = int(d), int(k)
    sigma = np.full(d, float(eps))
    sigma[:k] = 1.0
    beta = np.zeros(d)
    if target == "first":
        beta[0] = 1.0
    elif target == "uniform":
        beta[:k] = 1.0 / np.sqrt(k)
    else:
        if spike_weight is None or not spike_weight > 0:
            raise ValueError(f"{NAME}: target peer needs a spike_weight > 0; got {spike_weight!r}")
        beta[:] = 1.0
        beta[:k] = float(spike_weight)
        beta /= np.sqrt(beta @ (sigma * beta))
    return LinearSpiked(d=d, k=k, eps=float(eps), target_name=target, sigma=sigma, beta=beta)
