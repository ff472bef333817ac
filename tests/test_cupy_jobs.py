"""The pipeline's GPU jobs, run as steps (``python -m rfw2s ...`` in-process) on CuPy and on
NumPy, from the recipes the plan makes: the same tables. On a machine without a GPU, CuPy
is its strict emulation (tests/emulated_cupy.py), so the jobs' CuPy paths (transfers, the
kernel built on the device, the fused product, cuSOLVER's eigh, the memory check) run
everywhere."""
import numpy as np
import pandas as pd
import pytest

import emulated_cupy
from conftest import GPU_MISSING
from rfw2s import resources
from rfw2s.artifacts import read_metadata
from rfw2s.models import relu_sphere
from rfw2s.sample import train_students
from rfw2s.seeding import seed_sequence
from rfw2s.solve import fit_teacher
from rfw2s import paths
from steps import plan_of, run_curves

EXPERIMENT = {"model": "relu_sphere", "d": 8, "m_st": 300, "m_te": [4, 16], "replicates": 1, "seed": 3,
              "t": {"min": 1.0, "max": 1e8, "num": 40}}
# Each operator the plan can choose, and the settings that make it choose it.
OPERATORS = {"stored": {}, "cached": {"kernel_cache": "always"}, "tiled": {"matrix_free": "always"},
             "eigh": {"solver": "eigh"}}


def _only_curve_key(plan):
    (key,) = plan.experiments["x"].curves
    return key


def _curves(tmp_path, backend, experiment=None, **settings):
    plan = plan_of({"x": experiment or EXPERIMENT}, backend=backend, **settings)
    key = _only_curve_key(plan)
    return run_curves(plan, key, tmp_path), plan, key


def test_every_curve_job_operator_on_cupy_gives_the_numpy_tables(cupy_backend, tmp_path):
    reference, _, _ = _curves(tmp_path / "numpy", "numpy")
    for operator, settings in OPERATORS.items():
        table, plan, key = _curves(tmp_path / operator, cupy_backend, **settings)
        assert plan.step("curves", key).recipe.operator == operator
        assert table[["m_te", "t"]].equals(reference[["m_te", "t"]])
        # Lanczos operators agree to its tolerance (1e-10), eigh within it of Lanczos.
        np.testing.assert_allclose(table["L_ST"], reference["L_ST"], rtol=1e-9, atol=0, err_msg=operator)
        meta = read_metadata(tmp_path / operator / paths.curves_file(key))
        assert meta["backend"] == "cupy" and meta["recipe"] == plan.step("curves", key).recipe.as_dict()


def test_a_tolerance_the_step_budget_cannot_reach_is_in_the_table_and_the_log(backend, tmp_path, caplog):
    table, _, _ = _curves(tmp_path, backend, lanczos={"tol": 1e-15, "max_steps": 30})
    achieved = table["achieved_tol"]
    assert (table["lanczos_steps"] == 30).all() and np.isfinite(achieved).all() and (achieved > 1e-15).all()
    assert np.isfinite(table["L_ST"]).all()
    assert "the step budget 30 reached only" in caplog.text and "NOT the requested 1e-15" in caplog.text


def test_sampled_training_on_cupy_is_the_numpy_training(cupy_backend):
    # The inputs are drawn on the host from the same streams: only round-off may differ.
    model = relu_sphere(8)
    W = model.sample_features(seed_sequence(0, "student", 64, 0), 64)
    teachers = []
    for m in (2, 8):
        U = model.sample_features(seed_sequence(0, "teacher", m, 0), m)
        teachers.append((U, fit_teacher(model, U).coef))
    options = {"batch": 128, "n_eval": 4096, "runs": 2, "seed": 5}
    ts = [0.0, 50.0, 400.0]
    numpy_curves = train_students(model, W, teachers, ts, backend="numpy", **options)
    cupy_curves = train_students(model, W, teachers, ts, backend=cupy_backend, **options)
    for ours, theirs in zip(cupy_curves, numpy_curves):
        assert ours.eta == pytest.approx(theirs.eta, rel=1e-12)  # 2 / lam_max, from each backend's eigh
        np.testing.assert_allclose(ours.ts, theirs.ts, rtol=1e-12, atol=0)
        np.testing.assert_allclose(ours.runs, theirs.runs, rtol=1e-10, atol=0)


@pytest.mark.skipif(GPU_MISSING is None, reason="shrinks the emulated GPU's memory")
def test_a_curve_job_too_big_for_the_gpu_is_refused_before_it_allocates(monkeypatch, tmp_path):
    emulated_cupy.install(monkeypatch)
    plan = plan_of({"x": EXPERIMENT}, backend="cupy")
    key = _only_curve_key(plan)
    monkeypatch.setitem(emulated_cupy.MEMORY, "free", 1 << 20)
    with pytest.raises(resources.InsufficientResources, match=r"stored curves at M_ST = 300 needs about .* of "
                                                              r"GPU memory; only 1.0 MiB is free"):
        run_curves(plan, key, tmp_path)
    assert not (tmp_path / paths.curves_file(key)).exists()
    assert (tmp_path / paths.teacher_file(plan.experiments["x"].teachers, 0)).exists()  # what ran before stays


def test_one_job_for_every_replicate_gives_each_draw_its_own_curves(backend, tmp_path):
    both, _, _ = _curves(tmp_path / "both", backend, experiment={**EXPERIMENT, "replicates": 2})
    assert sorted(both["replicate"].unique()) == [0, 1]
    alone, _, _ = _curves(tmp_path / "alone", backend)
    r0 = both[both["replicate"] == 0].reset_index(drop=True)
    np.testing.assert_array_equal(r0["L_ST"], alone["L_ST"])
    # Replicate 1 is its own draw, with its own teachers: other curves, same teacher sizes.
    r1 = both[both["replicate"] == 1]
    assert r1["m_te"].tolist() == alone["m_te"].tolist() and not np.allclose(r1["L_ST"], alone["L_ST"])


def test_a_curve_job_refuses_missing_teachers_and_unmatched_operator_files(tmp_path):
    import dataclasses

    from rfw2s import cli

    plan = plan_of({"x": EXPERIMENT}, kernel_cache="always")
    key = _only_curve_key(plan)
    run_curves(plan, key, tmp_path)
    recipe = plan.step("curves", key).recipe
    teachers = str(tmp_path / paths.teacher_file(recipe.teachers, 0))
    gram = f"gram_r0={tmp_path / paths.kernel_file(recipe.kernel, 0)}"
    out = tmp_path / "c.parquet"

    def curves(changed, *args):
        cli.main(["curves", "--recipe", dataclasses.replace(recipe, **changed).to_json(), "--out", str(out), *args])

    with pytest.raises(SystemExit, match=r"teacher sizes \{0: \[32\]\} \(replicate: sizes\) are in none"):
        curves({"m_te": [4, 32]}, "--teachers", teachers, "--operator-files", gram)
    with pytest.raises(SystemExit, match=r"operator 'cached' reads gram for each of the replicates \[0, 1\]: files "
                                         r"named \['gram_r0', 'gram_r1'\]; got \['gram_r0'\]"):
        curves({"replicates": [0, 1]}, "--teachers", teachers, "--operator-files", gram)
    with pytest.raises(SystemExit, match=r"NAME=PATH"):
        curves({}, "--teachers", teachers, "--operator-files", gram.split("=")[1])
    with pytest.raises(SystemExit, match=r"replicates \[1\] have no teacher file"):
        curves({"replicates": [1], "operator": "stored", "kernel": None}, "--teachers", teachers)
    with pytest.raises(SystemExit, match=r"a recipe for a curves step is needed; got one for 'kernel'"):
        cli.main(["curves", "--recipe", plan.step("kernel", recipe.kernel).recipe.to_json(), "--out", str(out),
                  "--teachers", teachers])
    assert not out.exists()


def test_a_curve_job_imports_neither_pandas_nor_matplotlib(tmp_path):
    # Their imports would be a large part of a small job's time: the rows go out as columns.
    import json
    import subprocess
    import sys

    plan = plan_of({"x": EXPERIMENT})
    key = _only_curve_key(plan)
    run_curves(plan, key, tmp_path)  # its teachers, in this process
    inputs = paths.curve_inputs(plan, key)
    argv = ["curves", "--recipe", plan.step("curves", key).recipe.to_json(), "--teachers",
            *[str(tmp_path / p) for p in inputs["teachers"]], "--out", str(tmp_path / "again.parquet")]
    code = ("import sys, rfw2s.cli as cli; cli.main(sys.argv[1:]); "
            "print(json.dumps(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules)))")
    proc = subprocess.run([sys.executable, "-c", "import json; " + code, *argv], capture_output=True, text=True,
                          check=True)
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    assert "start-up (interpreter and imports)" not in proc.stderr  # only `python -m rfw2s` knows its start
    assert np.array_equal(pd.read_parquet(tmp_path / "again.parquet")["L_ST"],
                          pd.read_parquet(tmp_path / paths.curves_file(key))["L_ST"])
