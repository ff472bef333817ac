"""A dataset as the population: the loaders, the dual route against the primal ones and against
direct computations, the ceiling, accuracies, the split protocol, and what is refused."""
import copy
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfw2s import datasets
from rfw2s.backend import as_backend, to_numpy
from rfw2s.config import ConfigError, validate
from rfw2s.curves import exact_curves
from rfw2s.dual import dual_curves
from rfw2s.models import dataset
from rfw2s.models.empirical import Dataset
from rfw2s.plan import Plan
from rfw2s.seeding import draw
from rfw2s.solve import ceiling_losses, fit_teacher, student_curves, student_losses
from rfw2s.spectral import GradientFlow, Ridge, RuleSet
from steps import SCHEMA, target_of

TS = np.geomspace(1.0, 1e9, 25)


def _digits(n=120, classes="one_hot"):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:n], y[:n]
    if classes == "one_hot":
        return dataset(X, np.eye(10)[y], classes="one_hot"), y
    if classes == "binary":
        return dataset(X, np.where(y == 3, 1.0, -1.0), classes="binary"), y
    return dataset(X, (y - y.mean()) / y.std(), inputs="standardize"), y


def _teachers(model, sizes=(4, 16), seed=0):
    out = []
    for m in sizes:
        U = draw(model, seed, "teacher", m, 0)
        out.append((U, fit_teacher(model, U).coef))
    return out


# --- the dual route against the primal ones ----------------------------------------------------
@pytest.mark.parametrize("classes", ["one_hot", "binary", "regression"])
def test_the_dual_route_equals_the_dense_and_lanczos_primal_ones(classes, backend):
    model, _ = _digits(90, classes)
    W = draw(model, 1, "student", 160, 0)  # wider than the rows: the dual route's case, both run
    teachers = _teachers(model)
    rule = RuleSet([GradientFlow(TS), Ridge(np.geomspace(1e-6, 1.0, 7))])
    dual = dual_curves(model, W, teachers, rule, backend=backend)
    assert dual.solver == "dual" and dual.losses.shape == (2, 32) and dual.ceiling.shape == (32,)
    for operator in ("eigh", "stored"):
        primal = exact_curves(model, W, teachers, rule, operator=operator, lanczos={"tol": 1e-13, "max_steps": 400})
        np.testing.assert_allclose(dual.losses, primal.losses, rtol=1e-10, atol=0, err_msg=operator)
        np.testing.assert_allclose(dual.ceiling, primal.ceiling, rtol=1e-10, atol=1e-12 * model.target_norm2)
        if classes != "regression":
            np.testing.assert_array_equal(dual.accuracy, primal.accuracy)
            np.testing.assert_array_equal(dual.teacher_accuracy, primal.teacher_accuracy)
    # The one-call API takes the dual route here, and gives the same numbers.
    U, coef = teachers[1]
    np.testing.assert_allclose(student_losses(model, W, U, coef, TS), dual.losses[1, :25], rtol=1e-12)


def test_literal_full_batch_gradient_descent_on_the_rows_is_the_gradient_descent_filter():
    model, _ = _digits(60, "one_hot")
    M, N = 100, model.n_rows
    W = draw(model, 2, "student", M, 0)
    (U, coef), = _teachers(model, (8,))
    labels = model.values(U, coef)
    Phi = model.features(model.rows, W)
    eta = 0.5 / np.linalg.eigvalsh(Phi.T @ Phi / (N * M)).max()
    theta, losses = np.zeros((M, 10)), []
    for _ in range(200):  # f = Phi theta / sqrt(M), loss 1/2 mean |f - labels|^2
        f = Phi @ theta / np.sqrt(M)
        theta -= eta * Phi.T @ (f - labels) / (N * np.sqrt(M))
        losses.append(np.mean(np.sum((Phi @ theta / np.sqrt(M) - model.targets) ** 2, axis=1)))
    steps = np.arange(1, 201)
    exact = student_losses(model, W, U, coef, steps, rule="gradient_descent", step=eta)
    np.testing.assert_allclose(exact, losses, rtol=1e-10)


def test_a_one_hot_loss_is_the_sum_of_the_single_output_runs():
    model, y = _digits(80, "one_hot")
    W = draw(model, 3, "student", 200, 0)
    U = draw(model, 3, "teacher", 12, 0)
    whole = fit_teacher(model, U)
    total, fits = np.zeros(TS.size), 0.0
    for k in range(10):
        single = Dataset(model.rows, model.targets[:, k])
        fit = fit_teacher(single, U)
        np.testing.assert_allclose(fit.coef, whole.coef[:, k], rtol=1e-10, atol=1e-12)
        total += student_losses(single, W, U, fit.coef, TS)
        fits += fit.loss
    assert whole.coef.shape == (12, 10) and whole.loss == pytest.approx(fits, rel=1e-12)
    np.testing.assert_allclose(student_losses(model, W, U, whole.coef, TS), total, rtol=1e-11)


def test_the_ceiling_is_the_student_trained_on_a_teacher_that_is_the_truth():
    # A dataset: a teacher as wide as the rows interpolates them, so its labels are the truth.
    model, _ = _digits(40, "one_hot")
    W = draw(model, 4, "student", 90, 0)
    U = draw(model, 4, "teacher", 60, 0)
    fit = fit_teacher(model, U)
    assert fit.loss < 1e-12 * model.target_norm2  # its values are the truth to about 1e-7
    np.testing.assert_allclose(ceiling_losses(model, W, TS), student_losses(model, W, U, fit.coef, TS), rtol=1e-6,
                               atol=1e-12 * model.target_norm2)
    # The sphere's linear target: relu(<b, x>) - relu(-<b, x>) = <b, x>, a teacher of two features spans it.
    from rfw2s.models import relu_sphere

    sphere = relu_sphere(8)
    beta = np.eye(8)[0]
    U = np.stack([beta, -beta])
    fit = fit_teacher(sphere, U)
    assert fit.loss < 1e-15
    W = draw(sphere, 0, "student", 300, 0)
    for rule in ("gradient_flow", "ridge"):
        grid = TS if rule == "gradient_flow" else np.geomspace(1e-6, 1e-1, 9)
        np.testing.assert_allclose(ceiling_losses(sphere, W, grid, rule), student_losses(sphere, W, U, fit.coef, grid,
                                                                                          rule), rtol=1e-10)


def test_accuracies_of_the_dual_route_are_those_of_the_parameters_computed_directly():
    model, y = _digits(70, "one_hot")
    M, N = 150, model.n_rows
    W = draw(model, 5, "student", M, 0)
    (U, coef), = _teachers(model, (10,))
    mu = np.geomspace(1e-7, 1e-1, 6)
    curves = student_curves(model, W, [(U, coef)], Ridge(mu))
    Phi = model.features(model.rows, W)
    H, b = Phi.T @ Phi / (N * M), Phi.T @ model.values(U, coef) / (N * np.sqrt(M))
    for j, m in enumerate(mu):  # ridge's parameters by a plain solve, then the argmax of each row
        theta = np.linalg.solve(H + m * np.eye(M), b)
        assert curves.accuracy[0, j] == np.mean(np.argmax(Phi @ theta, axis=1) == y)
    # The teacher's own: its least squares by numpy.linalg.lstsq on the rows.
    Phi_U = model.features(model.rows, U)
    direct = np.linalg.lstsq(Phi_U, model.targets, rcond=None)[0]
    assert curves.teacher_accuracy[0] == np.mean(np.argmax(Phi_U @ direct, axis=1) == y)


def test_the_split_protocol_equals_a_brute_force_computation_on_a_few_dozen_rows():
    model, y = _digits(60, "one_hot")
    rows = datasets.split_rows(model.n_rows, {"teacher": 0.3, "student": 0.4, "test": 0.3}, seed=7, replicate=1)
    A, B, C = rows["teacher"], rows["student"], rows["test"]
    assert len(A) == 18 and len(B) == 24 and len(C) == 18 and not set(A) & set(B) | set(B) & set(C) | set(A) & set(C)
    M = 70
    W = draw(model, 6, "student", M, 0)
    U = draw(model, 6, "teacher", 9, 0)
    fit = fit_teacher(model.restricted(A), U)
    curves = dual_curves(model, W, [(U, fit.coef)], GradientFlow(TS), train=B, test=C)
    Phi_B, Phi_C, Phi_UA = (model.features(model.rows[r], V) for r, V in ((B, W), (C, W), (A, U)))
    teacher = np.linalg.lstsq(Phi_UA, model.targets[A], rcond=None)[0]  # least squares on A
    np.testing.assert_allclose(fit.coef, teacher, rtol=1e-8, atol=1e-10)
    f_B = model.features(model.rows[B], U) @ teacher
    f_C_teacher = model.features(model.rows[C], U) @ teacher
    assert curves.teacher_losses[0] == pytest.approx(np.mean(np.sum((f_C_teacher - model.targets[C]) ** 2, 1)))
    assert curves.teacher_accuracy[0] == np.mean(np.argmax(f_C_teacher, 1) == y[C])
    # Gradient flow on B in parameter space: theta(t) = V g_t(lam) V^T b with H = Phi_B^T Phi_B / (n M).
    n = len(B)
    lam, V = np.linalg.eigh(Phi_B.T @ Phi_B / (n * M))
    lam = np.maximum(lam, 0)
    for labels, losses, accuracy in ((f_B, curves.losses[0], curves.accuracy[0]),
                                     (model.targets[B], curves.ceiling, curves.ceiling_accuracy)):
        b = Phi_B.T @ labels / (n * np.sqrt(M))
        for i, t in enumerate(TS):
            g = np.where(lam > 1e-14 * lam.max(), -np.expm1(-t * lam) / np.where(lam > 0, lam, 1), 0.0)
            f_C = Phi_C @ (V @ (g[:, None] * (V.T @ b))) / np.sqrt(M)
            assert losses[i] == pytest.approx(np.mean(np.sum((f_C - model.targets[C]) ** 2, 1)), rel=1e-8)
            assert accuracy[i] == np.mean(np.argmax(f_C, 1) == y[C])


def test_the_split_is_keyed_by_replicate_not_by_order_and_takes_at_most_the_rows():
    sizes = datasets.split_sizes(14, {"teacher": 0.25, "student": 0.25, "test": 0.5})
    assert sizes == {"teacher": 3, "student": 3, "test": 7}  # rounding each would have asked for 15 of 14
    assert {r: len(v) for r, v in datasets.split_rows(14, {"teacher": 0.25, "student": 0.25, "test": 0.5}, 0,
                                                         0).items()} == sizes
    fractions = {"teacher": 0.2, "student": 0.5, "test": 0.3}
    first = datasets.split_rows(100, fractions, 3, 2)
    datasets.split_rows(100, fractions, 3, 0)
    assert all(np.array_equal(first[r], datasets.split_rows(100, fractions, 3, 2)[r]) for r in datasets.ROLES)
    assert not np.array_equal(first["test"], datasets.split_rows(100, fractions, 3, 1)["test"])


def test_the_infinite_width_student_is_the_limit_of_wide_ones():
    model, _ = _digits(60, "one_hot")
    (U, coef), = _teachers(model, (8,))
    limit = model.infinite_width(U, coef, GradientFlow(TS)).losses
    gaps = []
    for M in (500, 8000):
        W = draw(model, 8, "student", M, 0)
        gaps.append(np.max(np.abs(student_losses(model, W, U, coef, TS) / limit - 1)))
    assert gaps[1] < gaps[0] / 4 and gaps[1] < 0.05


# --- loaders ------------------------------------------------------------------------------
def test_the_loaders_read_a_shipped_dataset_an_npz_and_a_parquet_named_by_content(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    digits = datasets.read({"sklearn": "digits"})
    assert digits.X.shape == (1797, 64) and digits.y.shape == (1797,)
    np.savez("mine.npz", inputs=digits.X[:50], labels=digits.y[:50].astype(str))
    npz = datasets.read({"path": "mine.npz", "x": "inputs", "y": "labels"})
    frame = pd.DataFrame(digits.X[:50], columns=[f"p{i}" for i in range(64)]).assign(label=digits.y[:50].astype(str))
    frame.to_parquet("mine.parquet")
    parquet = datasets.read({"path": "mine.parquet", "y": "label"})
    np.testing.assert_array_equal(npz.X, parquet.X)
    # The content names the data, not the file: the same rows in another file, format or name.
    name = datasets.content_name(npz)
    assert name.split("-")[1] == datasets.content_name(parquet).split("-")[1]
    np.savez("renamed.npz", inputs=digits.X[:50], labels=digits.y[:50].astype(str))
    assert datasets.content_name(datasets.read({"path": "renamed.npz", "x": "inputs", "y": "labels"})).split("-")[1] \
        == name.split("-")[1]
    edited = digits.X[:50].copy()
    edited[3, 5] += 1.0
    np.savez("mine.npz", inputs=edited, labels=digits.y[:50].astype(str))
    datasets._read.cache_clear()
    assert datasets.content_name(datasets.read({"path": "mine.npz", "x": "inputs", "y": "labels"})) != name
    # Labels of any kind, classes in sorted order; a binary target's positive label as written.
    Y, index = datasets.encode(npz.y, {"kind": "one_hot"})
    assert Y.shape == (50, 10) and np.array_equal(datasets.classes(npz.y)[index], npz.y)
    Y, index = datasets.encode(digits.y, {"kind": "binary", "positive": 3})
    assert set(Y) == {-1.0, 1.0} and index.sum() == np.sum(digits.y == 3)
    # Standardized inputs drop the constant pixels and have E|x|^2 = 1.
    Z = datasets.preprocess(digits.X, "standardize")
    assert Z.shape[1] == 61 and np.mean(np.sum(Z * Z, axis=1)) == pytest.approx(1.0)


# --- what is refused, before any job ---------------------------------------------------------
def _experiment(**changes):
    exp = {"model": "dataset", "source": {"path": "rows.npz"}, "target": {"kind": "one_hot"}, "m_st": 64,
           "m_te": [4, 8], "replicates": 1, "seed": 0, "t": {"min": 1.0, "max": 1e6, "num": 5}}
    exp.update(changes)
    return exp


def _plan(exp, memory=1 << 34):
    return Plan(validate({"backend": "numpy", "experiments": {"x": copy.deepcopy(exp)}}, SCHEMA), target_of("numpy",
                                                                                                            memory))


@pytest.fixture
def rows_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    datasets._read.cache_clear()
    rng = np.random.default_rng(0)
    np.savez("rows.npz", X=rng.standard_normal((40, 5)), y=rng.integers(0, 3, 40))
    yield tmp_path
    datasets._read.cache_clear()


def _write(X, y, name="rows.npz"):
    np.savez(name, X=X, y=y)
    datasets._read.cache_clear()


@pytest.mark.parametrize("case, message", [
    ("missing file", r"experiments.x.source.path: file 'none.npz' not found \(a relative path is relative to"),
    ("unknown shipped dataset", r"experiments.x.source: .*'mnist'"),
    ("missing array", r"experiments.x.source.x: rows.npz has no array 'inputs'; it has X, y"),
    ("missing column", r"experiments.x.source.x: rows.parquet has no column\(s\) \['p9'\]"),
    ("non-numeric column", r"experiments.x.source.x: column 'kind' of rows.parquet is not numeric"),
    ("non-numeric array", r"experiments.x.source.x: array 'X' of rows.npz is not numeric"),
    ("NaN input", r"experiments.x.source.x: rows: 1 input value\(s\) are NaN or infinite \(the first at row 2, "
                  r"column 1\)"),
    ("infinite target", r"experiments.x.source.y: rows: 1 target value\(s\) are NaN or infinite"),
    ("one class", r"experiments.x.target.kind: one_hot needs at least two classes; the target has 1"),
    ("absent positive", r"experiments.x.target.positive: 7 does not occur in the target; its labels: 0, 1, 2"),
    ("split not positive", r"experiments.x.split.test: 0 is less than or equal to the minimum of 0"),
    ("split over 1", r"experiments.x.split: the fractions teacher \+ student \+ test add up to 1.2; at most 1"),
    ("split too small", r"experiments.x.split: 40 rows give too few rows for a role \(test 0\)"),
    ("corrupt file", r"experiments.x.source.path: rows.npz cannot be read as .npz"),
    ("missing labels", r"experiments.x.source.y: rows: 1 target value\(s\) are missing \(the first at row 4\)"),
    ("teacher fits exactly", r"experiments.x.m_te: \[40\] teacher features for the dataset's 40 rows: such a teacher "
                             r"fits its target exactly \(L_TE = 0\)"),
    ("teacher fits its split exactly", r"experiments.x.m_te: \[16\] teacher features for the teacher split's 16 rows"),
    ("samples of a dataset", r"experiments.x.samples: a dataset's population is its rows"),
    ("split of a sphere", r"experiments.x.split: the split protocol divides a dataset's rows; model relu_sphere"),
])
def test_bad_data_is_refused_naming_the_key_before_any_job(rows_file, case, message):
    rng = np.random.default_rng(1)
    exp = _experiment()
    if case == "missing file":
        exp["source"] = {"path": "none.npz"}
    elif case == "unknown shipped dataset":
        exp["source"] = {"sklearn": "mnist"}
    elif case == "missing array":
        exp["source"] = {"path": "rows.npz", "x": "inputs"}
    elif case in ("missing column", "non-numeric column"):
        frame = pd.DataFrame(rng.standard_normal((40, 3)), columns=["p0", "p1", "p2"]).assign(y=np.arange(40) % 3)
        if case == "non-numeric column":
            frame["kind"] = "a"
        frame.to_parquet("rows.parquet")
        exp["source"] = {"path": "rows.parquet", "y": "y", **({"x": ["p0", "p9"]} if case == "missing column" else {})}
    elif case == "non-numeric array":
        _write(np.full((40, 2), "a"), np.arange(40) % 3)
    elif case == "NaN input":
        X = rng.standard_normal((40, 5))
        X[2, 1] = np.nan
        _write(X, np.arange(40) % 3)
    elif case == "infinite target":
        exp["target"] = {"kind": "regression"}
        _write(rng.standard_normal((40, 5)), np.r_[np.inf, rng.standard_normal(39)])
    elif case == "corrupt file":
        Path("rows.npz").write_bytes(b"PK\x03\x04 not a zip file")
        datasets._read.cache_clear()
    elif case == "missing labels":
        frame = pd.DataFrame(rng.standard_normal((40, 3)), columns=["p0", "p1", "p2"])
        frame["y"] = ["a", "b"] * 20
        frame.loc[4, "y"] = None
        frame.to_parquet("rows.parquet")
        exp["source"] = {"path": "rows.parquet", "y": "y"}
    elif case == "one class":
        _write(rng.standard_normal((40, 5)), np.zeros(40, int))
    elif case == "absent positive":
        exp["target"] = {"kind": "binary", "positive": 7}
        _write(rng.standard_normal((40, 5)), np.arange(40) % 3)
    elif case == "split not positive":
        exp["split"] = {"teacher": 0.5, "student": 0.5, "test": 0}
    elif case == "split over 1":
        exp["split"] = {"teacher": 0.5, "student": 0.5, "test": 0.2}
    elif case == "split too small":
        exp["split"] = {"teacher": 0.5, "student": 0.45, "test": 0.02}
    elif case == "teacher fits exactly":
        exp["m_te"] = [4, 40]
    elif case == "teacher fits its split exactly":
        exp.update(split={"teacher": 0.4, "student": 0.3, "test": 0.3}, m_te=[4, 16])
    elif case == "samples of a dataset":
        exp["samples"] = {"n": 10, "seed": 0}
    elif case == "split of a sphere":
        exp = {"model": "relu_sphere", "d": 4, "m_st": 64, "m_te": [4], "replicates": 1, "seed": 0,
               "t": {"min": 1.0, "max": 1e6, "num": 5}, "split": {"teacher": 0.3, "student": 0.4, "test": 0.3}}
    with pytest.raises(ConfigError, match=message):
        _plan(exp)


def test_a_dataset_too_large_for_memory_is_refused_with_the_size_needed(rows_file, monkeypatch):
    from rfw2s import machine

    monkeypatch.setattr(datasets, "host_memory", lambda: 1000)
    with pytest.raises(ConfigError, match=r"source.path: rows.npz needs about [0-9.]+ KiB of memory to read, more "
                                          r"than the 1000.0 B of this machine"):
        _plan(_experiment())
    monkeypatch.setattr(datasets, "host_memory", machine.host_memory)
    datasets._read.cache_clear()
    # Read, but its rows' kernel would not fit in the declared memory.
    with pytest.raises(ConfigError, match=r"experiments.x: student dataset-\S+ needs about [0-9.]+ MiB \(dual\), "
                                          r"more than the 1.0 MiB"):
        _plan(_experiment(m_st=128), memory=1 << 20)


def test_a_dataset_plans_the_dual_route_where_its_rows_are_fewer_than_the_features(rows_file):
    plan = _plan(_experiment(m_st=[16, 64]))
    operators = {s.recipe.m_st: s.recipe.operator for s in plan.steps["curves"].values()}
    assert operators == {16: "stored", 64: "dual"}  # 40 rows
    split = _plan(_experiment(m_st=16, split={"teacher": 0.5, "student": 0.25, "test": 0.25}))
    (recipe,) = [s.recipe for s in split.steps["curves"].values()]
    assert recipe.operator == "dual" and recipe.split == {"teacher": 0.5, "student": 0.25, "test": 0.25}
    assert split.experiments["x"].classification and "accuracy" in split.experiments["x"].figures


def test_the_dual_route_on_cupy_gives_the_numpy_curves(cupy_backend):
    model, _ = _digits(50, "binary")
    W = draw(model, 9, "student", 120, 0)
    teachers = _teachers(model, (6,))
    rows = datasets.split_rows(50, {"teacher": 0.3, "student": 0.4, "test": 0.3}, 0, 0)
    for train, test in ((None, None), (rows["student"], rows["test"])):
        ours = dual_curves(model, W, teachers, GradientFlow(TS), backend=cupy_backend, train=train, test=test)
        theirs = dual_curves(model, W, teachers, GradientFlow(TS), train=train, test=test)
        np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-10)
        np.testing.assert_allclose(ours.ceiling, theirs.ceiling, rtol=1e-10)
        np.testing.assert_array_equal(ours.accuracy, theirs.accuracy)
    assert as_backend(cupy_backend).name == "cupy" and to_numpy(ours.losses).dtype == np.float64


def test_a_job_side_process_plans_a_dataset_as_handed_down_without_reading_it(rows_file, monkeypatch):
    from rfw2s.models import empirical

    empirical.forget_handed_down()
    planned = _plan(_experiment())
    empirical.hand_down()  # what the process that planned the run gives its jobs
    monkeypatch.setenv(empirical.VARIABLE, os.environ[empirical.VARIABLE])
    Path("rows.npz").unlink()  # a node that cannot reach the file
    datasets._read.cache_clear()
    again = _plan(_experiment())
    assert {k: sorted(v) for k, v in again.steps.items()} == {k: sorted(v) for k, v in planned.steps.items()}
    empirical.forget_handed_down()
    with pytest.raises(ConfigError, match="file 'rows.npz' not found"):  # the process that plans reads it
        _plan(_experiment())
