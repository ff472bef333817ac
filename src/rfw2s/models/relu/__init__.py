"""ReLU random features on the sphere: the paper's Model 2.2 (``relu_sphere``).

``phi(x; u) = relu(<u, x>)`` with ``u, x ~ Unif(S^{d-1})`` and a linear target
``f*(x) = <beta, x>``. Every population moment is in closed form: the kernel function is in
:mod:`.kernel`, the spectrum and the infinite-width student in :mod:`.spectrum`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...backend import array_namespace
from .kernel import kappa_into, kappa_product_into

NAME = "relu_sphere"
# Bump when a closed form here changes its numbers (every cached artifact is keyed by it).
VERSION = "1"
# Config parameters (JSON schema); the concrete model is the same for every teacher size.
PARAMETERS = {"d": {"type": "integer", "minimum": 2, "maximum": 100000, "description": "input dimension"}}
REQUIRED = ["d"]


def specialize(params: dict, m_te: int) -> dict:
    """The concrete model used with a teacher of ``m_te`` features (here: independent of it)."""
    return {"name": NAME, "d": int(params["d"])}


@dataclass(frozen=True, eq=False)
class ReluSphere:
    d: int
    beta: np.ndarray = field(repr=False)
    name = NAME

    # --- population moments ---------------------------------------------------------
    def gram(self, A, B):
        """``G[i, j] = E_x[phi(x; a_i) phi(x; b_j)]`` for feature directions as rows."""
        return kappa_into(A @ B.T, self.d)

    def gram_into(self, A, B, out):
        """:meth:`gram` written into ``out`` (a contiguous tile): one matrix product and the
        in-place kernel, nothing else allocated."""
        xp = array_namespace(A, B)
        xp.matmul(A, B.T, out=out)
        return kappa_into(out, self.d)

    def gram_product_into(self, A, B, X, work, out):
        """``out[...] = gram(A, B) @ X`` with ``work`` (a contiguous tile of gram's shape) as
        scratch. On CuPy the kernel function and the product are one pass over the tile
        (:func:`kappa_product_into`); on the CPU, where the kernel function costs more than
        memory, :meth:`gram_into` and a matrix product."""
        xp = array_namespace(A, B, X)
        if xp.__name__ != "cupy":
            return xp.matmul(self.gram_into(A, B, work), X, out=out)
        xp.matmul(A, B.T, out=work)
        return kappa_product_into(work, X, self.d, out)

    def target_moments(self, A):
        """``m[j] = E_x[phi(x; a_j) f*(x)] = <a_j, beta> / (2d)``."""
        xp = array_namespace(A)
        return A @ xp.asarray(self.beta) / (2.0 * self.d)

    @property
    def target_norm2(self) -> float:
        """``F = E[f*^2] = |beta|^2 / d``."""
        return float(self.beta @ self.beta) / self.d

    # --- sampling (draws, and the Monte Carlo / sampled-data checks) ------------
    def _unit_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.standard_normal((n, self.d))
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def sample_features(self, seed, M: int) -> np.ndarray:
        """``M`` feature directions ``u ~ Unif(S^{d-1})`` as rows; ``seed`` is anything
        ``numpy.random.default_rng`` accepts (a ``SeedSequence`` from :mod:`rfw2s.seeding`)."""
        return self._unit_rows(np.random.default_rng(seed), int(M))

    def sample_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self._unit_rows(rng, int(n))

    def features(self, X, A):
        """Feature matrix ``phi(x_i; a_j)`` for inputs ``X`` (rows) and directions ``A``."""
        xp = array_namespace(X, A)
        return xp.maximum(X @ A.T, 0.0)

    def features_into(self, X, A, out):
        """:meth:`features` written into ``out``, nothing allocated (sampled-data training
        calls it at every step; fresh memory is what costs there)."""
        xp = array_namespace(X, A)
        xp.matmul(X, A.T, out=out)
        return xp.maximum(out, 0.0, out=out)

    def target(self, X):
        xp = array_namespace(X)
        return X @ xp.asarray(self.beta)

    # --- infinite width ------------------------------------------------------------
    def infinite_width(self, U, coef, rule):
        """Exact ``M_ST -> inf`` student trained by ``rule`` (Funk-Hecke series, truncation
        controlled: :func:`rfw2s.models.relu.spectrum.relu_infinite_width`)."""
        from .spectrum import relu_infinite_width

        return relu_infinite_width(self, U, coef, rule)


def build(d: int) -> ReluSphere:
    return relu_sphere(d)


def relu_sphere(d: int, beta=None) -> ReluSphere:
    """Model 2.2 in dimension ``d``; ``beta=None`` means the first basis vector."""
    if int(d) != d or d < 2:
        raise ValueError(f"relu_sphere: d must be an integer >= 2; got {d!r}")
    d = int(d)
    if beta is None:
        beta = np.zeros(d)
        beta[0] = 1.0
    beta = np.asarray(beta, dtype=np.float64)
    if beta.shape != (d,) or not np.all(np.isfinite(beta)) or not np.any(beta):
        raise ValueError(f"relu_sphere: beta must be a finite non-zero vector of length d={d}")
    return ReluSphere(d=d, beta=beta)
