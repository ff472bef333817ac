"""ReLU random features, uniform on the sphere (``relu_sphere``; the paper's Model 2.2).

``phi(x; u) = relu(<u, x>)`` with ``u ~ Unif(S^{d-1})``. Inputs are uniform on the sphere
(``inputs="sphere"``, the paper's) or standard Gaussian (``inputs="gaussian"``, as in the
public peer code); the target is linear (the paper's ``<beta, x>``), a sum of spherical
harmonics, or a ReLU network (:mod:`.targets`). Every population moment is in closed form:
the kernel function is in :mod:`.kernel`, the spectrum and the infinite-width student in
:mod:`.spectrum`.

Gaussian inputs reduce to the sphere. With ``x = r theta`` (``r = |x|`` independent of the
direction ``theta``, ``E r^2 = d``), every feature is ``r relu(<u, theta>)``: the kernel is
``d kappa`` and a target ``r g(theta) + b_0`` has moments ``d m_g + b_0 E[r] c_0``. The features
span only functions ``r h(theta)``, on which the kernel operator acts as ``d`` times the
sphere's; the best such approximation of the constant ``b_0`` is ``(b_0 E[r] / d) r``, which
leaves ``b_0^2 (1 - E[r]^2 / d)`` that no student removes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...backend import array_namespace
from . import kernel
from .kernel import kappa_fused_product_into, kappa_into, kappa_product_into
from .targets import KINDS, HarmonicProfile, LinearProfile, relu_network_target

NAME = "relu_sphere"
# Bump when a closed form here changes its numbers (every cached artifact is keyed by it).
VERSION = "1"
INPUTS = ("sphere", "gaussian")
# The infinite-width solution is a series over degrees (config key `degrees` breaks it up).
PER_DEGREE = True
# Config parameters (JSON schema); the concrete model is the same for every teacher size.
PARAMETERS = {
    "d": {"type": "integer", "minimum": 2, "maximum": 100000, "description": "input dimension"},
    "inputs": {"type": "string", "enum": list(INPUTS), "default": "sphere",
               "description": "input law: uniform on the sphere, or standard Gaussian (features stay on the sphere)"},
    "target": {
        "description": "the target f*: linear <e_1, x>, spherical harmonics along e_1, or a random ReLU network",
        "default": {"kind": "linear"},
        "oneOf": [
            {"type": "object", "additionalProperties": False, "required": ["kind"],
             "properties": {"kind": {"const": "linear"}}},
            {"type": "object", "additionalProperties": False, "required": ["kind", "coefficients"],
             "properties": {
                 "kind": {"const": "harmonics"},
                 "coefficients": {"type": "object", "minProperties": 1, "maxProperties": 64,
                                  "propertyNames": {"pattern": "^[0-9]{1,2}$"},
                                  "additionalProperties": {"type": "number"},
                                  "description": "degree k -> a_k (energy a_k^2 in degree k)"},
                 "normalize": {"type": "boolean", "default": False,
                               "description": "scale the coefficients to unit energy"}}},
            {"type": "object", "additionalProperties": False, "required": ["kind", "width", "seed"],
             "properties": {
                 "kind": {"const": "relu_network"},
                 "width": {"type": "integer", "minimum": 1, "maximum": 4096},
                 "seed": {"type": "integer", "minimum": 0},
                 "center": {"type": "boolean", "default": False},
                 "normalize": {"type": "boolean", "default": False}}},
        ],
    },
}
REQUIRED = ["d"]


def specialize(params: dict, m_te: int) -> dict:
    """The concrete model used with a teacher of ``m_te`` features (here: independent of it).
    The paper's set-up (sphere, linear target) is ``{"name", "d"}`` alone."""
    spec = {"name": NAME, "d": int(params["d"])}
    target = dict(params.get("target") or {"kind": "linear"})
    if target["kind"] == "harmonics":  # degrees as sorted text: YAML gives int keys, JSON text
        target["coefficients"] = {str(k): float(v) for k, v in sorted(target["coefficients"].items(),
                                                                        key=lambda kv: int(kv[0]))}
    if target != {"kind": "linear"}:
        spec["target"] = target
    if params.get("inputs", "sphere") != "sphere":
        spec["inputs"] = params["inputs"]
    return spec


def radial_moments(d: int, inputs: str) -> tuple[float, float]:
    """``(E|x|, E|x|^2)`` of the input law: 1 on the sphere; for ``N(0, I_d)``
    ``E|x| = sqrt(2) Gamma((d + 1)/2) / Gamma(d/2)`` and ``E|x|^2 = d``."""
    if inputs == "sphere":
        return 1.0, 1.0
    return math.exp(0.5 * math.log(2.0) + math.lgamma((d + 1) / 2) - math.lgamma(d / 2)), float(d)


@dataclass(frozen=True, eq=False)
class ReluSphere:
    d: int
    profile: object = field(repr=False)  # the target's profile on the sphere (.targets)
    inputs: str = "sphere"
    name = NAME

    @property
    def beta(self):
        return self.profile.beta

    @property
    def radial_moments(self) -> tuple[float, float]:
        """``(E|x|, E|x|^2)`` of the inputs."""
        return radial_moments(self.d, self.inputs)

    @property
    def _kappa_d(self) -> int:
        # kappa(rho, d) = (sin th + (pi - th) cos th) / (2 pi d); Gaussian inputs have the
        # kernel d kappa(rho, d) = kappa(rho, 1).
        return self.d if self.inputs == "sphere" else 1

    @property
    def sphere_constant(self) -> float:
        """The constant of the sphere target the model reduces to: ``b_0 E[r] / E[r^2]``."""
        mean, power = self.radial_moments
        return self.profile.constant * mean / power

    # --- population moments ---------------------------------------------------------
    def gram(self, A, B):
        """``G[i, j] = E_x[phi(x; a_i) phi(x; b_j)]`` for feature directions as rows."""
        return kappa_into(A @ B.T, self._kappa_d)

    def gram_into(self, A, B, out):
        """:meth:`gram` written into ``out`` (a contiguous tile): one matrix product and the
        in-place kernel, nothing else allocated."""
        xp = array_namespace(A, B)
        xp.matmul(A, B.T, out=out)
        return kappa_into(out, self._kappa_d)

    def gram_product_into(self, A, B, X, work, out):
        """``out[...] = gram(A, B) @ X`` with ``work`` (a contiguous tile of gram's shape) as
        scratch. On CuPy the kernel function and the product are one pass over the tile
        (:func:`kappa_product_into`); on the CPU, where the kernel function costs more than
        memory, :meth:`gram_into` and a matrix product."""
        xp = array_namespace(A, B, X)
        if xp.__name__ != "cupy":
            return xp.matmul(self.gram_into(A, B, work), X, out=out)
        xp.matmul(A, B.T, out=work)
        return kappa_product_into(work, X, self._kappa_d, out)

    @property
    def kernel_product(self):
        """``(A, B, X, out) -> out = gram(A, B) @ X`` in one launch on CuPy with the inner
        products inside the kernel (no tile of them anywhere), where enabled
        (:data:`.kernel.FUSED_INNER_PRODUCTS`), else ``None``."""
        if not kernel.FUSED_INNER_PRODUCTS:
            return None
        return lambda A, B, X, out: kappa_fused_product_into(A, B, X, self._kappa_d, out)

    def target_moments(self, A):
        """``m[j] = E_x[phi(x; a_j) f*(x)]``: ``E[r^2]`` times the profile's moments on the
        sphere (``<a_j, beta> / (2d)`` for the linear target), plus ``b_0 E[r] c_0``."""
        m = self.profile.moments(A)
        mean, power = self.radial_moments
        if power != 1.0:
            m = power * m
        if self.profile.constant:
            m = m + self.profile.constant * mean * self._c0
        return m

    @property
    def _c0(self) -> float:
        from .spectrum import relu_coefficients

        return float(relu_coefficients(self.d, 0)[0])

    @property
    def target_norm2(self) -> float:
        """``F = E[f*^2] = E[r^2] E[g^2] + 2 b_0 E[r] E[g] + b_0^2`` (``|beta|^2 / d`` for the
        paper's target)."""
        g2, b0 = self.profile.energy, self.profile.constant
        mean, power = self.radial_moments
        if not b0 and power == 1.0:
            return g2
        return power * g2 + 2.0 * b0 * mean * self.profile.mean + b0**2

    @property
    def radial_remainder(self) -> float:
        """``b_0^2 (1 - E[r]^2 / E[r^2])``: the part of the constant no function ``r h(theta)``
        reaches (0 on the sphere)."""
        mean, power = self.radial_moments
        return self.profile.constant**2 * (1.0 - mean**2 / power)

    @property
    def loss_floor(self) -> float:
        """The part of ``F`` no student of these features can learn: energy in the degrees they
        do not see (odd ``k >= 3``), and on Gaussian inputs the constant's radial remainder."""
        return self.radial_moments[1] * getattr(self.profile, "invisible_energy", 0.0) + self.radial_remainder

    # --- sampling (draws, and the Monte Carlo / sampled-data checks) ------------
    def _unit_rows(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.standard_normal((n, self.d))
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def sample_features(self, seed, M: int) -> np.ndarray:
        """``M`` feature directions ``u ~ Unif(S^{d-1})`` as rows; ``seed`` is anything
        ``numpy.random.default_rng`` accepts (a ``SeedSequence`` from :mod:`rfw2s.seeding`)."""
        return self._unit_rows(np.random.default_rng(seed), int(M))

    def sample_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.inputs == "gaussian":
            return rng.standard_normal((int(n), self.d))
        return self._unit_rows(rng, int(n))

    def features(self, X, A):
        """Feature matrix ``phi(x_i; a_j)`` for inputs ``X`` (rows) and directions ``A``."""
        xp = array_namespace(X, A)
        Z = X @ A.T
        return xp.maximum(Z, 0.0, out=Z)  # in place: a second n x M array costs its fresh pages

    def features_into(self, X, A, out):
        """:meth:`features` written into ``out``, nothing allocated (sampled-data training
        calls it at every step; fresh memory is what costs there)."""
        xp = array_namespace(X, A)
        xp.matmul(X, A.T, out=out)
        return xp.maximum(out, 0.0, out=out)

    def target(self, X):
        """``f*(x) = |x| g(x / |x|) + b_0`` (``g(x)`` itself for the linear and ReLU-network
        profiles, which are homogeneous of degree 1)."""
        xp = array_namespace(X)
        if self.profile.kind == "harmonics" and self.inputs != "sphere":
            r = xp.sqrt(xp.sum(X * X, axis=1))
            y = r * self.profile.values(X / r[:, None])
        else:
            y = self.profile.values(X)
        return y + self.profile.constant if self.profile.constant else y

    # --- infinite width ------------------------------------------------------------
    def infinite_width(self, U, coef, rule):
        """Exact ``M_ST -> inf`` student trained by ``rule`` (Funk-Hecke series, truncation
        controlled: :func:`rfw2s.models.relu.spectrum.relu_infinite_width`)."""
        from .spectrum import relu_infinite_width

        return relu_infinite_width(self, U, coef, rule)


def build(d: int, target: dict | None = None, inputs: str = "sphere") -> ReluSphere:
    """The concrete model of a spec (:func:`specialize`): a ReLU-network target given by its
    ``width`` and ``seed`` is drawn here (``v_j ~ N(0, I_d)``, then ``b_j ~ N(0, 1)``, from the
    draw keyed by role ``target``, size ``width`` and replicate 0)."""
    from ...seeding import generator

    target = dict(target or {"kind": "linear"})
    if target["kind"] == "relu_network":
        rng = generator(int(target["seed"]), "target", int(target["width"]), 0)
        directions = rng.standard_normal((int(target["width"]), int(d)))
        target = {"kind": "relu_network", "directions": directions, "weights": rng.standard_normal(len(directions)),
                  "center": target.get("center", False), "normalize": target.get("normalize", False)}
    return relu_sphere(d, target=target, inputs=inputs)


def relu_sphere(d: int, beta=None, target=None, inputs: str = "sphere") -> ReluSphere:
    """ReLU features on the sphere in dimension ``d`` (Model 2.2).

    ``target``: ``None`` (linear, ``f* = <beta, x>``); ``{"kind": "harmonics", "coefficients":
    {k: a_k}}`` (``f* = sum_k a_k sqrt(N(d, k)) P_k(<beta, x>)`` for unit ``beta``, with
    ``"normalize": True`` scaling the ``a_k`` to unit energy); or ``{"kind": "relu_network",
    "directions": V, "weights": b, "center": bool, "normalize": bool}`` (``f* = sum_j b_j
    relu(<v_j, x>)``, rows ``v_j`` of any norm, plus the constant that centres it, scaled to
    unit variance where asked, in the population). ``beta=None`` means the first basis
    vector. ``inputs``: ``"sphere"`` or ``"gaussian"`` (``x ~ N(0, I_d)``).
    """
    if int(d) != d or d < 2:
        raise ValueError(f"relu_sphere: d must be an integer >= 2; got {d!r}")
    d = int(d)
    if inputs not in INPUTS:
        raise ValueError(f"relu_sphere: inputs must be one of {INPUTS}; got {inputs!r}")
    kind = (target or {"kind": "linear"}).get("kind")
    if kind not in KINDS:
        raise ValueError(f"relu_sphere: target kind must be one of {KINDS}; got {kind!r}")
    if kind == "relu_network":
        if beta is not None:
            raise ValueError("relu_sphere: beta is the direction of a linear or harmonic target; a relu_network "
                             "target has its own directions")
        mean, power = radial_moments(d, inputs)
        profile = relu_network_target(d, target["directions"], target["weights"], bool(target.get("center")),
                                      bool(target.get("normalize")), mean, power)
        return ReluSphere(d=d, profile=profile, inputs=inputs)
    if beta is None:
        beta = np.zeros(d)
        beta[0] = 1.0
    beta = np.asarray(beta, dtype=np.float64)
    if beta.shape != (d,) or not np.all(np.isfinite(beta)) or not np.any(beta):
        raise ValueError(f"relu_sphere: beta must be a finite non-zero vector of length d={d}")
    if kind == "linear":
        return ReluSphere(d=d, profile=LinearProfile(d, beta), inputs=inputs)
    coefficients = {int(k): float(v) for k, v in target["coefficients"].items()}
    if target.get("normalize"):
        norm = math.sqrt(sum(v * v for v in coefficients.values()))
        coefficients = {k: v / norm for k, v in coefficients.items()} if norm > 0 else coefficients
    return ReluSphere(d=d, profile=HarmonicProfile(d, beta, coefficients), inputs=inputs)
