"""What a model provides to the solvers, and the model-neutral result of an infinite-width
solution.

A model *module* (registered with :func:`rfw2s.models.register`) has ``NAME``, ``VERSION``
(bump it when the module's closed forms change its numbers: every cached artifact made with
the model is keyed by it), ``PARAMETERS`` and ``REQUIRED`` (its config keys as JSON schema),
``specialize(params, m_te) -> spec`` (the concrete model used with a teacher of ``m_te``
features: a dict with ``name`` and the arguments of ``build``) and ``build(**spec)``, which
returns an object with the methods of :class:`Model`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Model(Protocol):
    """The closed forms of one concrete model. Feature directions and inputs are rows; every
    method takes NumPy or CuPy arrays and returns the same library's arrays."""

    name: str
    target_norm2: float  # F = E[f*^2]

    def gram(self, A, B):
        """``G[i, j] = E_x[phi(x; a_i) phi(x; b_j)]``."""

    def target_moments(self, A):
        """``m[j] = E_x[phi(x; a_j) f*(x)]``."""

    def sample_features(self, seed, M: int) -> np.ndarray:
        """``M`` feature directions drawn from ``numpy.random.default_rng(seed)``."""

    def sample_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` inputs from the input law, drawn one after another from ``rng``."""

    def features(self, X, A):
        """``phi(x_i; a_j)`` for inputs ``X`` and directions ``A``."""

    def target(self, X):
        """``f*(x_i)``."""

    # Optional, used where present:
    #   gram_into(A, B, out) -> out            gram written into a contiguous tile in place
    #   gram_product_into(A, B, X, work, out)  out = gram(A, B) @ X in one pass (matrix-free)
    #   features_into(X, A, out) -> out        features written into a buffer
    #   infinite_width(U, coef, rule) -> InfiniteWidthCurve


@dataclass(frozen=True)
class InfiniteWidthCurve:
    """The exact ``M_ST -> inf`` student loss at every grid value of a learning rule, with what
    a truncated series left out."""

    losses: np.ndarray  # (len(grid),)
    degree: int | None  # highest degree summed (None: the solution is exact, no series)
    error_bound: np.ndarray  # (len(grid),) |exact - losses| <= error_bound
    residual_energy: float  # energy of the teacher's function in the degrees left out
    # Where the solution is a series over degrees k <= degree: the loss in each degree,
    # (degree + 1, len(grid)), and the teacher's own error in each, (degree + 1,).
    per_degree: np.ndarray | None = None
    teacher_per_degree: np.ndarray | None = None
