"""Real data as the population: loading a dataset (one scikit-learn ships, or the user's own
file), checking it, naming it by its content, and splitting its rows.

A dataset is read once, when the run is planned: its inputs ``X`` (``N x d``, numbers) and its
labels or values ``y`` (``N``) are checked (nothing missing, nothing non-finite, at least two
classes where classes are asked for), and named by the SHA-256 of their content, not by the
file's name or date (:func:`content_name`). The planning process writes them once into the
cache under that name (:func:`store`); every job reads them from there (:func:`open_rows`), so
editing the data gives every step that uses it a new key, and renaming or touching the file
gives none.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .machine import host_memory

# The datasets scikit-learn ships inside its package (no download), by the name a config gives.
SHIPPED = {"digits": "load_digits", "iris": "load_iris", "wine": "load_wine", "breast_cancer": "load_breast_cancer",
           "diabetes": "load_diabetes"}
FORMATS = (".npz", ".parquet")
# Bump when reading or checking a source changes the rows it gives (part of every dataset's key).
DATA_VERSION = "1"


class DataError(ValueError):
    """A dataset cannot be used as configured; ``key`` is the config key to blame, relative to
    the experiment (``source.path``, ``target.positive``, ...)."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


@dataclass(frozen=True)
class Rows:
    """A dataset's rows as read: inputs ``X`` (``N x d`` float64) and the column ``y`` (numbers, or
    labels of any kind as text), and what it is called."""

    X: np.ndarray
    y: np.ndarray
    name: str  # for messages: the shipped dataset's name, or the file's
    label: str = "file"  # the readable part of its name in keys: the shipped dataset's name, else "file"


def _read_npz(path: Path, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            for key, name in (("source.x", x), ("source.y", y)):
                if name not in data.files:
                    raise DataError(key, f"{path} has no array {name!r}; it has {', '.join(sorted(data.files))}")
            return data[x], data[y]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError("source.path", f"{path} cannot be read as .npz ({exc})") from None


def _read_parquet(path: Path, x, y: str | None) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    try:
        columns = pq.read_schema(path).names
    except Exception as exc:  # pyarrow's errors for a file that is not parquet
        raise DataError("source.path", f"{path} cannot be read as .parquet ({exc})") from None
    if y is None:
        raise DataError("source.y", f"name the target column of {path} (its columns: {', '.join(columns)})")
    if y not in columns:
        raise DataError("source.y", f"{path} has no column {y!r}; it has {', '.join(columns)}")
    names = [c for c in columns if c != y] if x is None else ([x] if isinstance(x, str) else list(x))
    missing = [c for c in names if c not in columns]
    if missing:
        raise DataError("source.x", f"{path} has no column(s) {missing}; it has {', '.join(columns)}")
    if not names:
        raise DataError("source.x", f"{path} has no input column besides {y!r}")
    table = pq.read_table(path, columns=names + [y])
    X = []
    for name in names:
        column = table.column(name).to_numpy(zero_copy_only=False)
        if column.dtype.kind not in "biuf":
            raise DataError("source.x", f"column {name!r} of {path} is not numeric ({column.dtype}); inputs are numbers")
        X.append(column.astype(np.float64))
    return np.stack(X, axis=1), table.column(y).to_numpy(zero_copy_only=False)


def _check_size(path: Path) -> None:
    """Refuse a file that would not fit in memory once read, with the size needed."""
    need = 3 * path.stat().st_size  # compressed or not: the arrays, and a copy while checking
    if need > host_memory():
        from .resources import format_bytes

        raise DataError("source.path", f"{path} needs about {format_bytes(need)} of memory to read, more than the "
                                       f"{format_bytes(host_memory())} of this machine")


@functools.lru_cache(maxsize=16)
def _read(source_json: str) -> Rows:
    source = json.loads(source_json)
    if "sklearn" in source:
        name = source["sklearn"]
        if name not in SHIPPED:
            raise DataError("source.sklearn", f"{name!r} is not a dataset scikit-learn ships; shipped: "
                                              f"{', '.join(sorted(SHIPPED))}")
        import sklearn.datasets

        X, y = getattr(sklearn.datasets, SHIPPED[name])(return_X_y=True)
        return Rows(np.asarray(X, dtype=np.float64), np.asarray(y), name, name)
    path = Path(source["path"])
    if path.suffix not in FORMATS:
        raise DataError("source.path", f"{str(path)!r} is neither of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError("source.path", f"file {str(path)!r} not found (a relative path is relative to the working "
                                       f"folder, {os.getcwd()})")
    _check_size(path)
    if path.suffix == ".npz":
        X, y = _read_npz(path, source.get("x") or "X", source.get("y") or "y")
        if X.dtype.kind not in "biuf":
            raise DataError("source.x", f"array {source.get('x') or 'X'!r} of {path} is not numeric ({X.dtype})")
        X = np.asarray(X, dtype=np.float64)
    else:
        X, y = _read_parquet(path, source.get("x"), source.get("y"))
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise DataError("source", f"{path}: inputs must be N x d and the target N long; got {X.shape} and {y.shape}")
    return Rows(X, np.asarray(y), path.stem)


def read(source: dict) -> Rows:
    """The rows of a config's ``source`` (``{sklearn: NAME}`` or ``{path: FILE, x: ..., y: ...}``),
    checked: numeric, finite inputs; at least one row and one column."""
    rows = _read(json.dumps(source, sort_keys=True))
    X, y = rows.X, rows.y
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise DataError("source", f"{rows.name}: needs at least 2 rows and 1 input column; got {X.shape}")
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise DataError("source.x", f"{rows.name}: {int(bad.sum())} input value(s) are NaN or infinite (the first at "
                                    f"row {i}, column {j}); inputs must be finite numbers")
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise DataError("source.y", f"{rows.name}: {int((~np.isfinite(y)).sum())} target value(s) are NaN or "
                                    "infinite; targets must be finite")
    missing = np.array([v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y]) \
        if y.dtype.kind == "O" else np.zeros(len(y), bool)
    if missing.any():
        raise DataError("source.y", f"{rows.name}: {int(missing.sum())} target value(s) are missing (the first at row "
                                    f"{int(np.argmax(missing))}); every row needs its target")
    return rows


def content_name(rows: Rows) -> str:
    """The dataset's name in keys: a readable part (the shipped dataset's name; ``file`` for a
    user's file, whose name may change) and 12 hex digits of the SHA-256 of its content (the
    inputs as float64, the target as numbers or as text)."""
    digest = hashlib.sha256(DATA_VERSION.encode())
    digest.update(str(rows.X.shape).encode() + np.ascontiguousarray(rows.X, dtype=np.float64).tobytes())
    if rows.y.dtype.kind in "biuf":  # numbers as numbers, however the file stores them
        digest.update(b"numbers" + np.ascontiguousarray(rows.y, dtype=np.float64).tobytes())
    else:  # labels as text
        digest.update(b"labels" + "\x00".join(map(str, rows.y)).encode())
    return f"{rows.label}-{digest.hexdigest()[:12]}"


# --- targets ------------------------------------------------------------------------------
TARGET_KINDS = ("one_hot", "binary", "regression")


def classes(y: np.ndarray) -> np.ndarray:
    """The distinct labels of ``y``, in sorted order."""
    return np.unique(y if y.dtype.kind in "biuf" else y.astype(str))


def _label(value, y: np.ndarray):
    """A config's label value as the column holds it (a YAML number or text)."""
    if y.dtype.kind in "biuf":
        try:
            return float(value)
        except (TypeError, ValueError):
            return value
    return str(value)


def encode(y: np.ndarray, target: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """The numbers the model fits, ``Y`` (``N`` or ``N x k``), and the class of each row (None for
    regression): ``one_hot`` (``Y_i = e_label``, classes sorted), ``binary`` (``+1`` for the
    ``positive`` label, else ``-1``; class 1 and 0), ``regression`` (centred, unit variance)."""
    kind = target["kind"]
    if kind == "regression":
        if y.dtype.kind not in "biuf":
            raise DataError("target.kind", f"regression needs a numeric target; this one holds {y.dtype} labels")
        values = y.astype(np.float64)
        sd = values.std()
        if not sd > 0:
            raise DataError("target.kind", "regression needs a target that varies; this one is constant")
        return (values - values.mean()) / sd, None
    found = classes(y)
    labels = y if y.dtype.kind in "biuf" else y.astype(str)
    if len(found) < 2:
        raise DataError("target.kind", f"{kind} needs at least two classes; the target has {len(found)} "
                                       f"({', '.join(map(str, found))})")
    if kind == "one_hot":
        index = np.searchsorted(found, labels)
        return np.eye(len(found))[index], index
    positive = _label(target["positive"], y)
    is_positive = labels == positive
    if not is_positive.any():
        shown = ", ".join(map(str, found[:20])) + (" ..." if len(found) > 20 else "")
        raise DataError("target.positive", f"{target['positive']!r} does not occur in the target; its labels: {shown}")
    return np.where(is_positive, 1.0, -1.0), is_positive.astype(np.int64)


# --- inputs ---------------------------------------------------------------------------------
INPUTS = ("sphere", "standardize")


def preprocess(X: np.ndarray, inputs: str) -> np.ndarray:
    """The inputs the features see: ``sphere`` maps each row to ``x / |x|``; ``standardize``
    centres each column, scales it to unit variance (a column with none is dropped) and divides
    the row by ``sqrt(d)``, so that ``E|x|^2 = 1``."""
    if inputs == "sphere":
        norms = np.linalg.norm(X, axis=1)
        if not np.all(norms > 0):
            raise DataError("inputs", f"row {int(np.argmin(norms))} is all zeros: it has no direction on the sphere; "
                                      "use inputs: standardize")
        return X / norms[:, None]
    sd = X.std(axis=0)
    kept = sd > 0
    Z = (X[:, kept] - X[:, kept].mean(axis=0)) / sd[kept]
    return Z / np.sqrt(Z.shape[1])


# --- the cache: rows named by their content ------------------------------------------------
def store(rows: Rows, path) -> None:
    """Write a dataset's rows under ``path`` (the cache's name for them) unless they are there."""
    from .artifacts import save_npz

    path = Path(path)
    if not path.exists():
        y = rows.y if rows.y.dtype.kind in "biuf" else rows.y.astype(str)
        save_npz(path, X=rows.X, y=y, name=np.asarray(rows.name), label=np.asarray(rows.label))


def open_rows(path) -> Rows:
    """A dataset's rows from the cache (as :func:`store` wrote them)."""
    from .artifacts import load_npz

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the dataset's rows are not in the cache; the Snakemake process that plans the "
                                "run writes them there (run snakemake again)")
    data = load_npz(path)
    return Rows(data["X"], data["y"], str(data["name"]), str(data["label"]))


# --- the split protocol -----------------------------------------------------------------------
ROLES = ("teacher", "student", "test")


def split_sizes(n: int, fractions: dict) -> dict[str, int]:
    """Rows of each role: ``floor(fraction n)`` each (fractions adding up to at most 1 take at most
    ``n`` rows together; 1e-9 forgives a fraction's binary round-off, 0.3 * 60 = 17.999...)."""
    return {role: int(float(fractions[role]) * n + 1e-9) for role in ROLES}


def split_rows(n: int, fractions: dict, seed: int, replicate: int) -> dict[str, np.ndarray]:
    """Disjoint rows of each role (sorted), drawn from (seed, ``split``, ``n``, replicate): a
    replicate's split never depends on which other splits were drawn, or in what order."""
    from .seeding import generator

    order = generator(seed, "split", n, replicate).permutation(n)
    sizes = split_sizes(n, fractions)
    out, start = {}, 0
    for role in ROLES:
        out[role] = np.sort(order[start:start + sizes[role]])
        start += sizes[role]
    return out
