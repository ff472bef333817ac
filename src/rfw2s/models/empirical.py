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
import json
import logging
import os

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
# Bytes of one block of rows' features while a moment is summed over the rows.
ROW_BLOCK_BYTES = 64 << 20
# The infinite-width student needs the rows' N x N limit kernel and its eigendecomposition
# (8192 rows: 0.5 GiB each, about 20 s on the 2-core CPU); beyond, its columns are left NaN.
INFINITE_WIDTH_MAX_ROWS = 8192
log = logging.getLogger("rfw2s")


# The environment variable through which the process that plans a run hands its datasets' specs
# to the job-side processes: they plan the same keys without reading (or even reaching) the data.
VARIABLE = "RFW2S_DATASETS"
_PLANNED: dict = {}  # the specs this process made, by the parameters they came from


def specialize(params: dict, m_te: int) -> dict:
    """The concrete model: the dataset by its content's name (rfw2s.datasets.content_name), its row
    count and input dimension after preprocessing, the preprocessing and the target. Read and
    checked here, or, in a job-side process, taken as the process that planned the run made it."""
    inputs = params.get("inputs", "sphere")
    target = dict(params["target"])
    key = json.dumps({"source": params["source"], "inputs": inputs, "target": target}, sort_keys=True)
    handed = json.loads(os.environ.get(VARIABLE) or "{}")
    if key not in handed:
        rows = datasets.read(params["source"])
        datasets.encode(rows.y, target)  # refuses a target the rows cannot give
        X = datasets.preprocess(rows.X, inputs)
        handed[key] = {"name": NAME, "data": datasets.content_name(rows), "rows": int(X.shape[0]),
                       "d": int(X.shape[1]), "inputs": inputs, "target": target}
    _PLANNED[key] = handed[key]
    return dict(handed[key])


def hand_down() -> None:
    """Put the specs this process planned where the jobs it starts find them (:data:`VARIABLE`)."""
    os.environ[VARIABLE] = json.dumps(_PLANNED, sort_keys=True)


def forget_handed_down() -> None:
    """The process that plans a run reads its data itself (a variable from an outer run is stale)."""
    os.environ.pop(VARIABLE, None)
    _PLANNED.clear()


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

    def _row_blocks(self, columns: int):
        """Slices of the rows whose features over ``columns`` directions take about ROW_BLOCK_BYTES:
        a dataset's moments are sums over rows, never an N x M matrix at once."""
        step = max(1, ROW_BLOCK_BYTES // (8 * max(columns, 1)))
        return [slice(i, i + step) for i in range(0, self.n_rows, step)]

    def gram(self, A, B):
        xp = array_namespace(A, B)
        return self.gram_into(A, B, xp.empty((A.shape[0], B.shape[0])))

    def gram_into(self, A, B, out):
        """``Phi_A^T Phi_B / N`` into ``out``, summed over blocks of rows."""
        xp = array_namespace(A, B)
        rows = self.rows_on(xp)
        out[...] = 0.0
        for block in self._row_blocks(A.shape[0] + B.shape[0]):
            left = self.features(rows[block], A)
            out += left.T @ (left if B is A else self.features(rows[block], B))
        out /= self.n_rows
        return out

    def target_moments(self, A):
        """``Phi_A^T Y / N``: one column per output (a vector for one output)."""
        xp = array_namespace(A)
        rows, Y = self.rows_on(xp), self.targets_on(xp)
        m = xp.zeros((A.shape[0], Y.shape[1]))
        for block in self._row_blocks(A.shape[0]):
            m += self.features(rows[block], A).T @ Y[block]
        m /= self.n_rows
        return m[:, 0] if self.single else m

    def project(self, W, vectors):
        """``Phi_W vectors`` on the rows (``N x k``, ``vectors`` ``M x k``): the values on the rows
        of the functions ``vectors`` describe in feature space, a block of rows at a time."""
        xp = array_namespace(W, vectors)
        rows = self.rows_on(xp)
        return xp.concatenate([self.features(rows[block], W) @ vectors for block in self._row_blocks(W.shape[0])])

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
        from ..dense import spectrum_of_gram
        from ..dual import infinite_width_kernel

        return spectrum_of_gram(infinite_width_kernel(self.rows, self.d), "numpy", divisor=1.0)

    def infinite_width(self, U, coef, rule):
        """The exact ``M_ST -> inf`` student on the rows (the dual route on the limit kernel), its
        loss summed over the outputs; None (with the reason logged) for more than
        INFINITE_WIDTH_MAX_ROWS rows, whose N x N eigendecomposition no job is sized for."""
        from ..dual import evaluate_on_rows

        if self.n_rows > INFINITE_WIDTH_MAX_ROWS:
            log.info("dataset of %d rows: no infinite-width curve (computed up to %d rows)", self.n_rows,
                     INFINITE_WIDTH_MAX_ROWS)
            return None
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
    """The concrete model of a spec (:func:`specialize`): the rows the cache holds under ``data``,
    built once per process (a job's replicates share it, and its infinite-width spectrum)."""
    return _built(json.dumps({"data": data, "rows": rows, "d": d, "inputs": inputs, "target": target}, sort_keys=True))


@functools.lru_cache(maxsize=4)
def _built(spec_json: str) -> Dataset:
    from ..paths import data_file
    from ..spectral import Labels

    spec = json.loads(spec_json)
    data, rows, d, inputs, target = (spec[k] for k in ("data", "rows", "d", "inputs", "target"))

    found = datasets.open_rows(data_file(data))
    X = datasets.preprocess(found.X, inputs)
    if X.shape != (rows, d):
        raise ValueError(f"dataset {data}: the cache holds {X.shape} rows and inputs, the plan expected {(rows, d)}")
    Y, index = datasets.encode(found.y, target)
    labels = None if index is None else Labels("one_hot" if target["kind"] == "one_hot" else "binary", index)
    return Dataset(X, Y, labels)
