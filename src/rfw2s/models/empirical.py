"""A real dataset as the population (``dataset``): the empirical distribution of its ``N`` rows,
each of weight ``1/N``. Every population moment is an average over the rows, so every formula of
the exact solvers holds as it is, nothing sampled.

Features are ReLUs with directions uniform on the sphere, ``phi(x; w) = relu(<w, x>)``, of the
inputs after a fixed preprocessing (:func:`rfw2s.datasets.preprocess`); the targets are one
output (``regression``, ``binary``) or one per class (``one_hot``, the loss summed over them).
With ``Phi_A[i, j] = phi(x_i; a_j)``: ``gram(A, B) = Phi_A^T Phi_B / N``, ``target_moments(A) =
Phi_A^T Y / N``, ``F = sum_i |Y_i|^2 / N``. The student is solved on the rows in function space
where they are fewer than its features (:mod:`rfw2s.dual`), and the infinite-width student too:
the kernel of infinitely many features is ``|x_i| |x_j| kappa(rho_ij)``.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import datasets
from ..backend import array_namespace, to_numpy
from .interface import InfiniteWidthCurve

NAME = "dataset"
# Bump when a closed form here changes its numbers (every cached artifact is keyed by it).
VERSION = "1"
PARAMETERS = {
    "source": {
        "description": "the rows: {sklearn: NAME} (a dataset scikit-learn ships) or {path: FILE, x: ..., y: ...}",
        "oneOf": [
            {"type": "object", "additionalProperties": False, "required": ["sklearn"],
             "properties": {"sklearn": {"type": "string", "enum": sorted(datasets.SHIPPED)}}},
            {"type": "object", "additionalProperties": False, "required": ["path"],
             "properties": {
                 "path": {"type": "string", "pattern": r"\.(npz|parquet)$",
                          "description": ".npz or .parquet, relative to the working folder"},
                 "x": {"description": "the inputs: an .npz array (default X), or .parquet columns (default every "
                                      "other column)",
                       "oneOf": [{"type": "string"}, {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
                 "y": {"type": "string", "description": "the target: an .npz array (default y), or a .parquet column"}}},
        ],
    },
    "inputs": {"type": "string", "enum": list(datasets.INPUTS), "default": "sphere",
               "description": "sphere: each row x / |x|; standardize: columns centred and scaled, rows / sqrt(d)"},
    "target": {
        "description": "one_hot (a unit vector per class), binary (+1 for the positive label, else -1), regression",
        "oneOf": [
            {"type": "object", "additionalProperties": False, "required": ["kind"],
             "properties": {"kind": {"const": "one_hot"}}},
            {"type": "object", "additionalProperties": False, "required": ["kind", "positive"],
             "properties": {"kind": {"const": "binary"}, "positive": {"type": ["string", "number", "boolean"]}}},
            {"type": "object", "additionalProperties": False, "required": ["kind"],
             "properties": {"kind": {"const": "regression"}}},
        ],
    },
}
REQUIRED = ["source", "target"]
# Rows of a dataset held for the dual route: its N x N kernel and eigenvectors fit in memory.
MAX_ROWS = 32766


def specialize(params: dict, m_te: int) -> dict:
    """The concrete model: the dataset by its content's name (rfw2s.datasets.content_name), its row
    count and input dimension after preprocessing, the preprocessing and the target."""
    rows = datasets.read(params["source"])
    inputs = params.get("inputs", "sphere")
    target = dict(params["target"])
    datasets.encode(rows.y, target)  # refuses a target the rows cannot give
    X = datasets.preprocess(rows.X, inputs)
    return {"name": NAME, "data": datasets.content_name(rows), "rows": int(X.shape[0]), "d": int(X.shape[1]),
            "inputs": inputs, "target": target}


def store_sources(experiments) -> None:
    """Write the rows of every dataset the experiments use into the cache, named by their content
    (the process that plans a run does this once; jobs read them there)."""
    from ..paths import data_file

    for exp in experiments:
        if exp.get("model") == NAME:
            rows = datasets.read(exp["source"])
            datasets.store(rows, data_file(datasets.content_name(rows)))


class Dataset:
    """The closed forms of a dataset as the population (:mod:`rfw2s.models.interface`), plus its
    rows for the dual route: ``rows`` (``N x d``), ``targets`` (``N x outputs``), ``labels`` (the
    classes, for accuracies; None for a regression)."""

    name = NAME

    def __init__(self, X, Y, labels=None):
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        if X.ndim != 2 or Y.shape[:1] != X.shape[:1] or Y.ndim not in (1, 2):
            raise ValueError(f"a dataset needs inputs N x d and targets N or N x k; got {X.shape} and {Y.shape}")
        if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
            raise ValueError("a dataset's inputs and targets must be finite numbers")
        self.rows, self.single = X, Y.ndim == 1
        self.targets = Y.reshape(len(Y), -1)
        self.labels = labels
        self._device: dict = {}

    @property
    def d(self) -> int:
        return self.rows.shape[1]

    @property
    def n_rows(self) -> int:
        return self.rows.shape[0]

    @property
    def target_norm2(self) -> float:
        """``F = sum_i |Y_i|^2 / N``."""
        return float(np.sum(self.targets * self.targets)) / self.n_rows

    def rows_on(self, xp):
        """The rows in the library ``xp`` (copied to a device once)."""
        return self._on(xp, "rows")

    def targets_on(self, xp):
        return self._on(xp, "targets")

    def _on(self, xp, what):
        if xp is np:
            return getattr(self, what)
        key = (xp.__name__, what)
        if key not in self._device:
            self._device[key] = xp.asarray(getattr(self, what))
        return self._device[key]

    def restricted(self, index) -> "Dataset":
        """The dataset of some rows only (a split's population)."""
        index = np.asarray(index)
        Y = self.targets[index][:, 0] if self.single else self.targets[index]
        return Dataset(self.rows[index], Y, None if self.labels is None else self.labels.restricted(index))

    def values(self, U, coef, rows=None, xp=np):
        """A random feature model's values on the rows (or the row indices ``rows``), ``N x
        outputs``: ``relu(x U^T) coef``, in the library ``xp``."""
        X = self.rows_on(xp) if rows is None else self.rows_on(xp)[xp.asarray(rows)]
        return (self.features(X, xp.asarray(U)) @ xp.asarray(coef)).reshape(X.shape[0], -1)

    def accuracy(self, U, coef, rows=None, xp=np) -> float:
        """The accuracy of a random feature model ``(U, coef)`` on the rows (or those of ``rows``)."""
        labels = self.labels if rows is None else self.labels.restricted(rows)
        return float(labels.accuracy(self.values(U, coef, rows, xp)))

    # --- population moments: averages over the rows -------------------------------------
    def features(self, X, A):
        """``relu(<a_j, x_i>)`` for inputs ``X`` (rows) and directions ``A``."""
        xp = array_namespace(X, A)
        Z = X @ A.T
        return xp.maximum(Z, 0.0, out=Z)

    def features_into(self, X, A, out):
        """:meth:`features` written into ``out`` (``len(X) x len(A)``), nothing allocated."""
        xp = array_namespace(X, A)
        xp.matmul(X, A.T, out=out)
        return xp.maximum(out, 0.0, out=out)

    def gram(self, A, B):
        xp = array_namespace(A, B)
        rows = self.rows_on(xp)
        left = self.features(rows, A)
        right = left if B is A else self.features(rows, B)
        return (left.T @ right) / self.n_rows

    def gram_into(self, A, B, out):
        xp = array_namespace(A, B)
        rows = self.rows_on(xp)
        left = self.features(rows, A)
        xp.matmul(left.T, left if B is A else self.features(rows, B), out=out)
        out /= self.n_rows
        return out

    def target_moments(self, A):
        """``Phi_A^T Y / N``: one column per output (a vector for one output)."""
        xp = array_namespace(A)
        m = self.features(self.rows_on(xp), A).T @ self.targets_on(xp) / self.n_rows
        return m[:, 0] if self.single else m

    # --- draws ----------------------------------------------------------------------------
    def sample_features(self, seed, M: int) -> np.ndarray:
        """``M`` directions uniform on the sphere of the inputs' dimension."""
        z = np.random.default_rng(seed).standard_normal((int(M), self.d))
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    def sample_inputs(self, rng, n: int):
        raise NotImplementedError("a dataset's population is its rows: train on a split of them (config key split), "
                                  "not on samples")

    def target(self, X):
        raise NotImplementedError("a dataset's target is known on its rows only (model.targets)")

    # --- infinite width ---------------------------------------------------------------------
    @functools.cached_property
    def _infinite_spectrum(self):
        from ..dual import infinite_width_kernel
        from ..dense import spectrum_of_gram

        return spectrum_of_gram(infinite_width_kernel(self.rows, self.d), "numpy", divisor=1.0)

    def infinite_width(self, U, coef, rule):
        """The exact ``M_ST -> inf`` student on the rows (the dual route on the limit kernel), its
        loss summed over the outputs."""
        from ..dual import evaluate_on_rows

        lam, V = self._infinite_spectrum
        columns = np.stack([self.values(U, coef), self.targets], axis=1)
        losses = evaluate_on_rows(lam, V, columns, self.targets, rule, 1.0).losses[0]
        return InfiniteWidthCurve(to_numpy(losses), None, np.zeros_like(losses), 0.0)


def dataset(X, Y, inputs: str = "sphere", classes: str | None = None) -> Dataset:
    """A dataset as the population: inputs ``X`` (``N x d``) preprocessed by ``inputs`` (``sphere``
    or ``standardize``, :func:`rfw2s.datasets.preprocess`), targets ``Y`` already numbers (``N``, one
    output, or ``N x k``). ``classes``: ``one_hot`` (each row's class is its largest target) or
    ``binary`` (positive where the target is above 0) to measure accuracies; None for none."""
    from ..spectral import Labels

    if inputs not in datasets.INPUTS:
        raise ValueError(f"inputs must be one of {datasets.INPUTS}; got {inputs!r}")
    X = datasets.preprocess(np.asarray(X, dtype=np.float64), inputs)
    Y = np.asarray(Y, dtype=np.float64)
    labels = None
    if classes == "one_hot":
        labels = Labels("one_hot", np.argmax(Y.reshape(len(Y), -1), axis=1))
    elif classes == "binary":
        labels = Labels("binary", (Y.reshape(-1) > 0).astype(np.int64))
    elif classes is not None:
        raise ValueError(f"classes must be one_hot, binary or None; got {classes!r}")
    return Dataset(X, Y, labels)


def build(data: str, rows: int, d: int, inputs: str, target: dict) -> Dataset:
    """The concrete model of a spec (:func:`specialize`): the rows the cache holds under ``data``."""
    from ..paths import data_file
    from ..spectral import Labels

    found = datasets.open_rows(data_file(data))
    X = datasets.preprocess(found.X, inputs)
    if X.shape != (rows, d):
        raise ValueError(f"dataset {data}: the cache holds {X.shape} rows and inputs, the plan expected {(rows, d)}")
    Y, index = datasets.encode(found.y, target)
    labels = None if index is None else Labels("one_hot" if target["kind"] == "one_hot" else "binary", index)
    return Dataset(X, Y, labels)
