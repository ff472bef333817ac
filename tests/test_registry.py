"""The model registry: Model 2.3's closed forms, and a toy model defined only in this file
that runs through the solvers and the whole DAG (loaded as a plugin)."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rfw2s.models import make_model, register, specialize
from rfw2s.seeding import seed_sequence
from rfw2s.solve import fit_teacher, student_losses
from rfw2s.spectral import student_losses_infinite

# --- a toy model: isotropic linear features, x ~ N(0, I_d), f* = x_1 ----------------
NAME = "toy_isotropic_linear"
PARAMETERS = {"d": {"type": "integer", "minimum": 1, "maximum": 1000}}
REQUIRED = ["d"]


def specialize_toy(params, m_te):
    return {"name": NAME, "d": int(params["d"])}


class ToyModel:
    name = NAME

    def __init__(self, d):
        self.d = d
        self.beta = np.eye(d)[0]

    def gram(self, A, B):
        return A @ B.T

    def target_moments(self, A):
        return A[:, 0] * 1.0

    target_norm2 = 1.0

    def sample_features(self, seed, M):
        return np.random.default_rng(seed).standard_normal((int(M), self.d))

    def sample_inputs(self, rng, n):
        return rng.standard_normal((int(n), self.d))

    def features(self, X, A):
        return X @ A.T

    def target(self, X):
        return X[:, 0]


specialize = specialize_toy  # noqa: F811  (the module is the model: rfw2s reads these names)
build = ToyModel
register(sys.modules[__name__])
THIS_FILE = Path(__file__).resolve()


def _linear23(m_te, **params):
    spec = dict(specialize_model23(m_te, params))
    return make_model(spec.pop("name"), **spec)


def specialize_model23(m_te, params):
    from rfw2s.models import specialize as registry_specialize

    return registry_specialize("linear_spiked", params, m_te)


def test_model23_defaults_follow_the_teacher_size():
    spec = specialize_model23(16, {})
    assert spec == {"name": "linear_spiked", "d": 64, "k": 4, "eps": 1 / 16, "target": "first"}
    spec = specialize_model23(100, {"dim_exponent": 1.0, "spike_exponent": 1.0, "tail_exponent": 2.0})
    assert (spec["d"], spec["k"], spec["eps"]) == (100, 100, 1e-4)


@pytest.mark.parametrize("target", ["first", "uniform"])
def test_model23_closed_forms_match_monte_carlo(target, rng):
    model = _linear23(9, target=target)
    A = model.sample_features(seed_sequence(0, "teacher", 3, 0), 3)
    X = model.sample_inputs(rng, 400_000)
    phi, y = model.features(X, A), model.target(X)
    for exact, samples in ((model.gram(A, A), phi[:, :, None] * phi[:, None, :]),
                           (model.target_moments(A), phi * y[:, None]), (model.target_norm2, y**2)):
        mean, se = samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
        assert np.all(np.abs(exact - mean) < 5 * se)
    assert model.target_norm2 == pytest.approx(1.0)  # beta sits on the spike (variance 1)


def test_model23_finite_width_approaches_its_infinite_width_solution():
    model = _linear23(16)
    U = model.sample_features(seed_sequence(0, "teacher", 16, 0), 16)
    fit = fit_teacher(model, U)
    ts = np.concatenate([[0.0], np.geomspace(1e-2, 1e5, 40)])
    L_inf = student_losses_infinite(model, U, fit.coef, ts)
    assert L_inf[0] == pytest.approx(model.target_norm2, rel=1e-6)
    assert L_inf[-1] == pytest.approx(fit.loss, rel=1e-6)  # student -> teacher's function
    gaps = [np.max(np.abs(student_losses(model, model.sample_features(seed_sequence(0, "student", m, 0), m),
                                         U, fit.coef, ts) / L_inf - 1)) for m in (128, 512, 2048)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 0.1


def test_toy_model_runs_through_the_solvers():
    model = make_model(NAME, d=20)
    U = model.sample_features(seed_sequence(0, "teacher", 5, 0), 5)
    W = model.sample_features(seed_sequence(0, "student", 200, 0), 200)
    fit = fit_teacher(model, U)
    # 5 random directions in 20 dimensions capture about 5/20 of x_1's variance.
    assert 0.5 < fit.loss < 1.0
    L = student_losses(model, W, U, fit.coef, [0.0, 1e6])
    assert L[0] == pytest.approx(1.0) and L[1] == pytest.approx(fit.loss, rel=1e-6)
    with pytest.raises(NotImplementedError, match="no infinite-width solution"):
        student_losses_infinite(model, U, fit.coef, [1.0])


@pytest.mark.workflow
def test_toy_model_runs_through_the_dag(tmp_path):
    from workflow_helpers import snakemake, write_config

    config = {"backend": "numpy", "model_plugins": [str(THIS_FILE)], "plot": {"dpi": 50},
              "experiments": {"toy": {"model": NAME, "d": 24, "m_st": 96, "m_te": [3, 6, 12], "replicates": 1,
                                      "seed": 1, "t": {"min": 1e-3, "max": 1e3, "num": 30}}}}
    snakemake(tmp_path, write_config(tmp_path, config))
    summary = pd.read_parquet(tmp_path / "results" / "toy" / "summary.parquet")
    assert summary["m_te"].tolist() == [3, 6, 12]
    assert summary["ratio_inf_best"].isna().all()  # no infinite-width solution: NaN, not an error
    assert (tmp_path / "results" / "toy" / "figures" / "fig2a.png").stat().st_size > 0
