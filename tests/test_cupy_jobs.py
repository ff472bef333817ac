"""The pipeline's GPU jobs, run as steps (``python -m rfw2s ...`` in-process) on CuPy and on
NumPy: the same tables. On a machine without a GPU, CuPy is its strict emulation
(tests/emulated_cupy.py), so the jobs' CuPy paths (transfers, the kernel built on the
device, the fused product, cuSOLVER's eigh, the memory check) run everywhere."""
import json

import numpy as np
import pandas as pd
import pytest

import emulated_cupy
from conftest import GPU_MISSING
from rfw2s import cli, resources
from rfw2s.artifacts import read_metadata
from rfw2s.models import relu_sphere
from rfw2s.sample import train_students
from rfw2s.seeding import seed_sequence
from rfw2s.solve import fit_teacher

MODEL = json.dumps({"name": "relu_sphere", "d": 8})
T_GRID = ["--t-min", "1", "--t-max", "1e8", "--t-num", "40"]
STUDENT = ["--seed", "3", "--m-st", "300"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """Teachers of 4 and 16 features for the 300-wide student of seed 3 (each job draws the
    student itself), fitted on NumPy."""
    folder = tmp_path_factory.mktemp("inputs")
    teachers = folder / "teachers_r0.npz"
    cli.main(["teacher", "--model", MODEL, "--backend", "numpy", "--seed", "3", "--m-te", "4", "16",
              "--replicate", "0", "--out", str(teachers)])
    return [str(teachers)]


def _curves(inputs, out, backend, *how):
    cli.main(["curves", "--model", MODEL, "--backend", backend, *STUDENT, "--teachers", *inputs,
              "--m-te", "4", "16", *how, "--replicate", "0", *T_GRID, "--out", str(out)])
    return pd.read_parquet(out)


def test_every_curve_job_layout_on_cupy_gives_the_numpy_tables(inputs, cupy_backend, tmp_path):
    reference = _curves(inputs, tmp_path / "numpy.parquet", "numpy", "--build-kernel")
    # The kernel and eigh jobs on the device, then the curve job from their outputs.
    gram, eigvals, eigvecs = (str(tmp_path / name) for name in ("gram.npy", "eigvals.npy", "eigvecs.npy"))
    cli.main(["kernel", "--model", MODEL, "--backend", cupy_backend, *STUDENT, "--replicate", "0", "--out", gram])
    cli.main(["eigh", "--backend", cupy_backend, "--gram", gram, "--out-eigvals", eigvals, "--out-eigvecs", eigvecs])
    layouts = {"built": ["--build-kernel"], "matrix_free": ["--matrix-free"], "cached": ["--gram", gram],
               "eigh": ["--solver", "eigh", "--eigvals", eigvals, "--eigvecs", eigvecs]}
    for name, how in layouts.items():
        table = _curves(inputs, tmp_path / f"{name}.parquet", cupy_backend, *how)
        assert table[["m_te", "t"]].equals(reference[["m_te", "t"]])
        # Lanczos layouts agree to its tolerance (1e-10), eigh within it of Lanczos.
        np.testing.assert_allclose(table["L_ST"], reference["L_ST"], rtol=1e-9, atol=0, err_msg=name)
        assert read_metadata(tmp_path / f"{name}.parquet")["backend"] == "cupy"


def test_a_tolerance_the_step_budget_cannot_reach_is_in_the_table_and_the_log(inputs, backend, tmp_path, caplog):
    table = _curves(inputs, tmp_path / "curves.parquet", backend, "--build-kernel", "--tol", "1e-15",
                    "--max-steps", "30")
    achieved = table["achieved_tol"]
    assert (table["steps"] == 30).all() and np.isfinite(achieved).all() and (achieved > 1e-15).all()
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
def test_a_curve_job_too_big_for_the_gpu_is_refused_before_it_allocates(inputs, monkeypatch, tmp_path):
    emulated_cupy.install(monkeypatch)
    monkeypatch.setitem(emulated_cupy.MEMORY, "free", 1 << 20)
    with pytest.raises(resources.InsufficientResources, match=r"curves at M_ST = 300 needs about .* of GPU "
                                                              r"memory; only 1.0 MiB is free"):
        _curves(inputs, tmp_path / "curves.parquet", "cupy", "--build-kernel")
    assert not (tmp_path / "c.pq").exists()


def test_one_job_for_every_replicate_gives_each_draw_own_curves(inputs, backend, tmp_path):
    # A curve job serves the replicates of one width, a teacher job all sizes of one replicate.
    fits = {}
    for m_te in (16, 4):  # one size per file, in another order
        fits[m_te] = tmp_path / f"teacher_{m_te}_r1.npz"
        cli.main(["teacher", "--model", MODEL, "--backend", "numpy", "--seed", "3", "--m-te", str(m_te),
                  "--replicate", "1", "--out", str(fits[m_te])])
    both = tmp_path / "both.parquet"
    cli.main(["curves", "--model", MODEL, "--backend", backend, *STUDENT,
              "--replicate", "0", "1", "--teachers", *inputs, str(fits[16]), str(fits[4]), "--m-te", "4", "16",
              "--build-kernel", *T_GRID, "--out", str(both)])
    table = pd.read_parquet(both)
    assert sorted(table["replicate"].unique()) == [0, 1]
    alone = _curves(inputs, tmp_path / "r0.parquet", backend, "--build-kernel")
    pd.testing.assert_frame_equal(table[table["replicate"] == 0].reset_index(drop=True), alone)
    # Replicate 1 is its own draw, with its own teachers: other curves, same teacher sizes.
    r1 = table[table["replicate"] == 1]
    assert r1["m_te"].tolist() == alone["m_te"].tolist() and not np.allclose(r1["L_ST"], alone["L_ST"])


def test_a_curve_job_refuses_missing_teachers_and_unmatched_replicates(inputs, tmp_path):
    common = ["curves", "--model", MODEL, "--backend", "numpy", *STUDENT, *T_GRID, "--out", str(tmp_path / "c.pq")]
    with pytest.raises(SystemExit, match=r"teacher sizes \{0: \[32\]\} \(replicate: sizes\) are in none"):
        cli.main(common + ["--build-kernel", "--replicate", "0", "--teachers", *inputs, "--m-te", "4", "32"])
    with pytest.raises(SystemExit, match=r"one of each cached operator file per --replicate \(2\); got \{'gram': 1\}"):
        cli.main(common + ["--gram", str(tmp_path / "g.npy"), "--replicate", "0", "1", "--teachers", *inputs,
                           "--m-te", "4"])
    with pytest.raises(SystemExit, match=r"replicates \[1\] have no teacher file"):
        cli.main(common + ["--build-kernel", "--replicate", "1", "--teachers", *inputs, "--m-te", "4"])
    assert not (tmp_path / "c.pq").exists()


def test_a_job_draws_the_student_that_the_draw_step_writes(tmp_path):
    draw = tmp_path / "draw.npy"
    cli.main(["draw", "--model", MODEL, "--role", "student", *STUDENT[:2], "--size", "300", "--replicate", "2",
              "--out", str(draw)])
    W = cli.draw_student(relu_sphere(8), seed=3, m_st=300, replicate=2)
    assert np.array_equal(np.load(draw), W) and not np.array_equal(W, cli.draw_student(relu_sphere(8), 3, 300, 1))
