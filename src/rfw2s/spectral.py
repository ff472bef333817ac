"""Learning rules as spectral filters (gradient flow, gradient descent, ridge), the loss of a
filtered student in an eigenbasis, and the infinite-width student of any model that has one.

The student's top layer, ``f = M^{-1/2} sum_j theta_j phi_j`` trained from ``theta = 0`` on
the loss ``1/2 E[(f - y)^2]``, ends at ``theta = phi(H) b`` for a *filter* ``phi`` of the
kernel ``H = G / M`` (``b = c / sqrt(M)``, ``c_j = E[phi_j f_TE]``). With
``H = V diag(lam) V^T``, ``c^ = V^T c`` and ``m^ = V^T m`` (``m_j = E[phi_j f*]``), its
population loss is::

    L = F + (1/M) sum_k [ phi(lam_k)^2 lam_k c^_k^2 - 2 phi(lam_k) c^_k m^_k ]

(:class:`SameKernel`; a student trained on one kernel and measured on another, on samples or a
split, :class:`OtherKernel`). One function, :func:`evaluate`, binds the rule to the training
kernel and evaluates either form: the dense solver calls it with the eigenpairs of ``H``, Lanczos
quadrature with the Ritz pairs of its tridiagonal matrix, the dual route with those of a
dataset's row kernel. A filter also gives each mode's
*progress* ``e(lam) = lam phi(lam)``, the fraction of a mode's coefficient the student has
learnt, which is all an infinite-width solution needs.

A filter holds its grid (the values of its own parameter, one loss each) and evaluates
``phi`` on every grid value and eigenvalue at once, in the array library of the eigenvalues.
"""
from __future__ import annotations

from dataclasses import dataclass

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
    axis = "t"  # what the grid holds

    def __init__(self, t):
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if np.any(np.isnan(t)) or np.any(t < 0):
            raise ValueError("gradient-flow times t must be non-negative numbers")
        self.grid = t

    @property
    def times(self) -> np.ndarray:
        """The training time of each grid value."""
        return self.grid

    def bind(self, lam_max: float):
        """This filter for a training kernel whose largest eigenvalue is ``lam_max``."""
        return self

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
        return _bound(self.grid, lam)


def _bound(scale, lam):
    """``min(1, scale lam)`` (0 where ``lam = 0``) at every ``scale`` (rows) and eigenvalue."""
    lam = np.asarray(lam, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf * 0, replaced below
        bound = np.minimum(1.0, np.multiply.outer(scale, lam))
    return np.where(lam > 0, bound, 0.0)


class GradientDescent:
    """Full-batch gradient descent from zero, ``k`` steps of size ``eta``:
    ``phi(lam) = (1 - (1 - eta lam)^k) / lam`` (``= k eta`` at ``lam = 0``), plotted at ``t = eta k``.

    ``eta`` is absolute, or ``eta_times_lam_max`` of the training kernel's largest eigenvalue
    (resolved by :meth:`bind`); gradient descent is stable only for ``eta < 2 / lam_max``.
    """

    name = "gradient_descent"
    axis = "steps"

    def __init__(self, steps, eta: float | None = None, eta_times_lam_max: float | None = None):
        k = np.asarray(steps, dtype=np.float64).reshape(-1)
        if np.any(~np.isfinite(k)) or np.any(k < 0) or np.any(k != np.round(k)):
            raise ValueError("gradient-descent step counts must be non-negative integers")
        if (eta is None) == (eta_times_lam_max is None):
            raise ValueError("gradient descent takes a step eta, or eta_times_lam_max, not both")
        given = eta if eta is not None else eta_times_lam_max
        if not (np.isfinite(given) and given > 0):
            raise ValueError(f"gradient descent needs a positive step; got {given!r}")
        self.grid, self.eta, self.eta_times_lam_max = k, eta, eta_times_lam_max

    @property
    def times(self) -> np.ndarray:
        self._need_eta()
        return self.eta * self.grid

    def _need_eta(self):
        if self.eta is None:
            raise ValueError("this gradient-descent step is relative to lam_max: bind() it to a kernel first")

    def bind(self, lam_max: float):
        """The step resolved for a training kernel whose largest eigenvalue is ``lam_max``, and
        refused at or above the stability limit ``2 / lam_max`` (naming the largest stable step)."""
        eta = self.eta if self.eta is not None else self.eta_times_lam_max / lam_max
        limit = 2.0 / lam_max
        if not eta < limit:
            raise ValueError(f"step eta = {eta:.6g} is unstable for this kernel: gradient descent needs "
                             f"0 < eta < 2 / lam_max = {limit:.6g} (lam_max = {lam_max:.6g})")
        return GradientDescent(self.grid, eta=eta)

    def _decay(self, xp, lam):
        """``(1 - eta lam)^k`` at every step count (rows) and eigenvalue (columns), accurate where
        ``eta lam`` is tiny (through ``log1p``) and with its sign where ``1 < eta lam < 2``."""
        self._need_eta()
        k = xp.asarray(self.grid, dtype=xp.float64).reshape(-1, 1)
        base = 1.0 - self.eta * lam.reshape(1, -1)
        magnitude = xp.exp(k * xp.log(xp.where(base == 0, 1.0, xp.abs(base))))
        magnitude = xp.where(base == 0, (k == 0) * 1.0, magnitude)
        odd = (k % 2) == 1
        return xp.where((base < 0) & odd, -magnitude, magnitude), base

    def __call__(self, lam):
        xp = array_namespace(lam)
        lam = lam.reshape(1, -1)
        k = xp.asarray(self.grid, dtype=xp.float64).reshape(-1, 1)
        e = self._progress(xp, lam)
        positive = lam > 0
        return xp.where(positive, e / xp.where(positive, lam, 1.0), k * self.eta)

    def _progress(self, xp, lam):
        decay, base = self._decay(xp, lam)
        k = xp.asarray(self.grid, dtype=xp.float64).reshape(-1, 1)
        # 1 - (1 - x)^k = -expm1(k log1p(-x)) for 0 <= x < 1: no cancellation at small x.
        small = -xp.expm1(k * xp.log1p(-xp.where(base > 0, self.eta * lam.reshape(1, -1), 0.0)))
        return xp.where(base > 0, small, 1.0 - decay)

    def progress(self, lam):
        lam = np.asarray(lam, dtype=np.float64).reshape(1, -1)
        return np.where(lam > 0, self._progress(np, lam), 0.0)

    def progress_bound(self, lam):
        """``min(1, k eta lam)``: Bernoulli's inequality, for ``eta lam <= 1`` (the omitted
        eigenvalues of a series, which are tiny)."""
        self._need_eta()
        return _bound(self.eta * self.grid, lam)


class Ridge:
    """Ridge regression, the penalty ``mu`` on ``1/2 E[(f - y)^2] + mu/2 |theta|^2``:
    ``phi(lam) = 1 / (lam + mu)``, its progress ``lam / (lam + mu)``. No training time."""

    name = "ridge"
    axis = "mu"

    def __init__(self, mu):
        mu = np.asarray(mu, dtype=np.float64).reshape(-1)
        if np.any(~np.isfinite(mu)) or np.any(mu <= 0):
            raise ValueError("ridge penalties mu must be positive numbers")
        self.grid = mu

    @property
    def times(self) -> np.ndarray:
        return np.full_like(self.grid, np.nan)

    def bind(self, lam_max: float):
        return self

    def __call__(self, lam):
        xp = array_namespace(lam)
        return 1.0 / (lam.reshape(1, -1) + xp.asarray(self.grid, dtype=xp.float64).reshape(-1, 1))

    def progress(self, lam):
        lam = np.asarray(lam, dtype=np.float64).reshape(1, -1)
        return lam / (lam + self.grid[:, None])

    def progress_bound(self, lam):
        """``min(1, lam / mu)``."""
        return _bound(1.0 / self.grid, lam)


class RuleSet:
    """Several filters evaluated as one, their grids one after another: one solve (one Lanczos
    process, one eigendecomposition) serves every rule; :meth:`split` gives each its part."""

    name = "rules"

    def __init__(self, rules):
        self.rules = list(rules)
        self.grid = np.concatenate([r.grid for r in self.rules])

    @property
    def times(self) -> np.ndarray:
        return np.concatenate([r.times for r in self.rules])

    def bind(self, lam_max: float):
        return RuleSet([r.bind(lam_max) for r in self.rules])

    def split(self, values):
        """``values`` along the last axis (one per grid value of the set) -> one per rule."""
        edges = np.cumsum([0] + [r.grid.size for r in self.rules])
        return [values[..., a:b] for a, b in zip(edges[:-1], edges[1:])]

    def __call__(self, lam):
        return array_namespace(lam).concatenate([r(lam) for r in self.rules], axis=0)

    def progress(self, lam):
        return np.concatenate([r.progress(lam) for r in self.rules], axis=0)

    def progress_bound(self, lam):
        return np.concatenate([r.progress_bound(lam) for r in self.rules], axis=0)


RULES = {rule.name: rule for rule in (GradientFlow, GradientDescent, Ridge)}


def learning_rule(name: str, grid, **parameters):
    """The filter of the learning rule ``name`` at the values ``grid`` of its parameter (times
    ``t``, step counts, or penalties ``mu``)."""
    if name not in RULES:
        raise ValueError(f"unknown learning rule {name!r}; known: {', '.join(RULES)}")
    return RULES[name](grid, **parameters)


def log_grid(spec: dict) -> np.ndarray:
    """``{min, max, num}``: log-spaced values, both ends included (a config's grid)."""
    return np.geomspace(float(spec["min"]), float(spec["max"]), int(spec["num"]))


def rule_of(recipe: dict):
    """The filter a recipe's rule describes: ``{"name", "grid": {min, max, num}, ...}`` with the
    rule's parameters beside (a gradient-descent grid is rounded to distinct step counts)."""
    parameters = {k: v for k, v in recipe.items() if k not in ("name", "grid")}
    grid = log_grid(recipe["grid"])
    if recipe["name"] == GradientDescent.name:
        grid = np.unique(np.rint(grid))
    return learning_rule(recipe["name"], grid, **parameters)


def rules_of(recipes: list[dict]):
    """The filter of a recipe's rules: the rule itself when there is one, else a RuleSet."""
    rules = [rule_of(r) for r in recipes]
    return rules[0] if len(rules) == 1 else RuleSet(rules)


def each_rule(rule) -> list:
    """The rules of a filter (a RuleSet's, or the filter alone)."""
    return rule.rules if isinstance(rule, RuleSet) else [rule]


# --- the one evaluator: bind the rule to the training kernel, evaluate in its eigenbasis ----
def _outputs(a, leading: int):
    """``a`` with its outputs as the last axis: ``(..., q)`` (one output: ``q = 1``)."""
    return a.reshape(a.shape[:leading] + (-1,))


class _Columns:
    """What both forms share: each column's coordinates in the training kernel's eigenbasis, which
    the filter multiplies (``c_hat`` or ``b_hat``), and the student's values from them."""

    def coordinates(self, g, column: int):
        """``phi(lam)`` times one column's coordinates at every grid value: ``(T, k, outputs)``."""
        return g[:, :, None] * _outputs(self.start, 2)[None, :, column, :]


@dataclass(frozen=True)
class SameKernel(_Columns):
    """Quadratic forms of a student trained and measured on one kernel (trained on the population
    and measured on it; on a dataset's rows in their dual form): with the training kernel
    ``V diag(lam) V^T``, each column's coefficients ``c_hat`` (``k x columns x outputs``: a teacher's
    ``V^T c``, the ceiling's ``V^T m``) and the target's ``m_hat`` (``k x outputs``),

        L = F + (1/M) sum_k [ phi(lam_k)^2 lam_k |c^_k|^2 - 2 phi(lam_k) c^_k . m^_k ]

    (dot products over the outputs). ``values`` (``rows x k``), where given, maps a column's
    ``phi(lam) c_hat`` to the student's values on evaluation rows."""

    c_hat: object
    m_hat: object
    F: float
    M: float
    values: object = None

    def losses(self, g, lam):
        c_hat = _outputs(self.c_hat, 2)
        squares = (c_hat * c_hat).sum(axis=2)  # (k, columns)
        cross = (c_hat * _outputs(self.m_hat, 1)[:, None, :]).sum(axis=2)
        return (self.F + ((g * g * lam) @ squares - 2.0 * (g @ cross)) / self.M).T

    @property
    def start(self):
        return self.c_hat


@dataclass(frozen=True)
class OtherKernel(_Columns):
    """Quadratic forms of a student trained on one kernel and measured on another (trained on a
    sample, measured on the population; trained on one split of a dataset's rows, measured on
    another): with the training kernel's eigenbasis, each column's start ``b_hat`` (``k x columns x
    outputs``), the measuring kernel ``H_hat`` (``k x k``) and target ``m_hat`` (``k x outputs``) in it,
    the student's coordinates are ``Z = phi(lam) b_hat`` and

        L = F - (2 / sqrt(M)) Z . m^ + Z^T H^ Z   (summed over the outputs)."""

    b_hat: object
    H_hat: object
    m_hat: object
    F: float
    M: float
    values: object = None

    def losses(self, g, lam):
        xp = array_namespace(g)
        b_hat, m_hat = _outputs(self.b_hat, 2), _outputs(self.m_hat, 1)
        out = xp.empty((b_hat.shape[1], g.shape[0]))
        for i in range(b_hat.shape[1]):
            total = self.F
            for j in range(b_hat.shape[2]):
                Z = g * b_hat[:, i, j]  # the coordinates at every grid value
                total = total - (2.0 / np.sqrt(self.M)) * (Z @ m_hat[:, j]) + xp.sum((Z @ self.H_hat) * Z, axis=1)
            out[i] = total
        return out

    @property
    def start(self):
        return self.b_hat


@dataclass(frozen=True)
class Labels:
    """The classes of evaluation rows, for accuracies: ``one_hot`` (``index`` the class of each
    row; the prediction is the largest output, the first on ties) or ``binary`` (``index`` 1 for
    the positive class, else 0; the prediction is positive where the output is above 0)."""

    kind: str
    index: np.ndarray

    def accuracy(self, values) -> np.ndarray:
        """The fraction of rows predicted right, for values ``(..., rows, outputs)``."""
        xp = array_namespace(values)
        index = xp.asarray(self.index)
        predicted = xp.argmax(values, axis=-1) if self.kind == "one_hot" else (values[..., 0] > 0).astype(xp.int64)
        return (predicted == index).mean(axis=-1)

    def restricted(self, rows) -> "Labels":
        """The labels of some rows only."""
        return Labels(self.kind, np.asarray(self.index)[np.asarray(rows)])


@dataclass(frozen=True)
class Filtered:
    """One evaluation of a filter: losses of every column (``columns x T``), their accuracies
    where evaluation rows and labels were given, and the filter as evaluated (bound)."""

    losses: np.ndarray
    accuracy: np.ndarray | None
    rule: object


def evaluate(rule, lam, terms, lam_max: float | None = None, labels: Labels | None = None) -> Filtered:
    """The filter ``rule`` bound to the training kernel (its largest eigenvalue: ``lam_max``, or
    the largest of ``lam``), evaluated in that kernel's eigenbasis (or Ritz basis) for every
    column of ``terms`` (:class:`SameKernel` or :class:`OtherKernel`) at every grid value: the one
    place every route (dense, Lanczos, samples, dual) turns a spectrum into curves. Accuracies
    where ``labels`` are given and ``terms`` has evaluation rows. Host arrays out; raises
    SolverError on non-finite losses."""
    from .backend import to_numpy
    from .errors import SolverError

    bound = rule.bind(float(lam.max()) if lam_max is None else float(lam_max))
    g = bound(lam)  # (T, k)
    losses = to_numpy(terms.losses(g, lam))
    if not np.all(np.isfinite(losses)):
        raise SolverError(f"non-finite student loss ({lam.shape[0]} eigenvalues); check the grid and inputs")
    accuracy = None
    if labels is not None and terms.values is not None:
        xp = array_namespace(g)
        rows, T = terms.values.shape[0], g.shape[0]
        columns = []
        for i in range(losses.shape[0]):
            coordinates = terms.coordinates(g, i)  # (T, k, outputs): one matrix product for every grid value
            k, q = coordinates.shape[1:]
            flat = coordinates.transpose(1, 0, 2).reshape(k, T * q)
            values = (terms.values @ flat).reshape(rows, T, q).transpose(1, 0, 2)
            columns.append(labels.accuracy(values))
        accuracy = to_numpy(xp.stack(columns))
    return Filtered(losses, accuracy, bound)


@dataclass(frozen=True)
class Curves:
    """The exact curves of one student draw, every route's one result: the losses of the students
    trained on each teacher (``teachers x T``) and of the one trained on the truth (the strong
    ceiling, ``T``); accuracies where the target has classes; how the solver did."""

    losses: np.ndarray
    ceiling: np.ndarray
    solver: str  # the tables' `solver` column (rfw2s.operators)
    steps: int  # Lanczos steps (0 for the dense routes)
    achieved_tol: float  # Lanczos: max relative change over the last check (NaN for the dense routes)
    converged: bool
    rule: object  # the filter as evaluated: a step relative to lam_max resolved for this kernel
    accuracy: np.ndarray | None = None  # (teachers, T)
    ceiling_accuracy: np.ndarray | None = None  # (T,)
    # Where the student is measured on other rows than the teachers were fitted on (a split), the
    # teachers' loss and accuracy there; None: the teacher files' own.
    teacher_losses: np.ndarray | None = None
    teacher_accuracy: np.ndarray | None = None

    @classmethod
    def of(cls, filtered: Filtered, solver: str, steps: int = 0, achieved_tol: float = float("nan"),
           converged: bool = True, **teachers) -> "Curves":
        """From an evaluation whose last column is the ceiling."""
        acc = filtered.accuracy
        return cls(filtered.losses[:-1], filtered.losses[-1], solver, steps, achieved_tol, converged, filtered.rule,
                   None if acc is None else acc[:-1], None if acc is None else acc[-1], **teachers)


def student_losses_infinite(model, U, coef, ts) -> np.ndarray:
    """Exact infinite-width (``M_ST -> inf``) student loss after gradient flow for each time in
    ``ts``, for the teacher ``(U, coef)``: the model's own infinite-width solution. Raises
    ``NotImplementedError`` for a model that has none."""
    solution = getattr(model, "infinite_width", None)
    if solution is None:
        raise NotImplementedError(f"model {model.name!r} has no infinite-width solution")
    return solution(np.asarray(U, float), np.asarray(coef, float), GradientFlow(ts)).losses
