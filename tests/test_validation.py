"""Independent computations agree: sampled-data training on the exact curve, finite width
approaching infinite width, and the infinite-width solver's truncation control."""
import numpy as np
import pandas as pd
import pytest

from rfw2s.models import relu_sphere
from rfw2s.sample import largest_stable_step, train_student
from rfw2s.seeding import seed_sequence
from rfw2s.models.relu.spectrum import TruncationError, relu_infinite_width
from rfw2s.solve import fit_teacher, student_losses
from rfw2s.spectral import GradientFlow, student_losses_infinite
from rfw2s.validation import convergence_table, disagreements

MODEL = relu_sphere(8)


def _teacher(m_te, replicate=0, model=MODEL):
    U = model.sample_features(seed_sequence(1, "teacher", m_te, replicate), m_te)
    return U, fit_teacher(model, U)


def _student(m_st, replicate=0, model=MODEL):
    return model.sample_features(seed_sequence(1, "student", m_st, replicate), m_st)


def test_sampled_gradient_descent_lands_on_the_exact_curve_within_4_standard_errors():
    W = _student(128)
    U, fit = _teacher(16)
    ts = np.geomspace(30, 3000, 4)
    sampled = train_student(MODEL, W, U, fit.coef, ts, runs=8, batch=1024, seed=3)
    exact = student_losses(MODEL, W, U, fit.coef, sampled.ts)
    assert np.all(np.abs(sampled.ts - ts) <= sampled.eta / 2)  # whole steps
    assert np.all(np.abs(sampled.losses - exact) < 4 * sampled.se)
    assert np.all(sampled.se < 0.02 * exact)  # the check is sharp, not vacuous
    # ...and is not passed by any curve: the teacher's own loss is far outside.
    assert np.all(np.abs(sampled.losses - fit.loss) > 10 * sampled.se)


def test_unstable_step_is_refused_with_the_largest_stable_step():
    W = _student(64)
    U, fit = _teacher(4)
    limit = largest_stable_step(MODEL, W)
    with pytest.raises(ValueError, match=rf"2 / lam_max = {limit:.4g}"):
        train_student(MODEL, W, U, fit.coef, [10.0], eta=1.01 * limit)
    with pytest.raises(ValueError, match="runs must be >= 2"):
        train_student(MODEL, W, U, fit.coef, [10.0], runs=1)


def test_finite_width_approaches_infinite_width_as_the_student_grows():
    ts = np.geomspace(10, 1e6, 40)
    widths = [128, 512, 2048]
    rows = []
    for r in range(2):
        for m_te in (8, 32):
            U, fit = _teacher(m_te, r)
            L_inf = student_losses_infinite(MODEL, U, fit.coef, ts)
            for m_st in widths:
                L = student_losses(MODEL, _student(m_st, r), U, fit.coef, ts)
                rows.append(pd.DataFrame(dict(m_st=m_st, m_te=m_te, replicate=r, t=ts, L_ST=L, L_ST_inf=L_inf,
                                              L_TE=fit.loss)))
    table = convergence_table(pd.concat(rows, ignore_index=True))
    assert set(table["m_st"]) == {128.0, 512.0, 2048.0, np.inf}
    for m_te in (8, 32):
        part = table[table["m_te"] == m_te]
        infinite = part[np.isinf(part["m_st"])].set_index("replicate")["ratio_best"]
        gaps = [float((part[part["m_st"] == w].set_index("replicate")["ratio_best"] - infinite).abs().mean())
                for w in widths]
        assert gaps[0] > gaps[1] > gaps[2], (m_te, gaps)
        assert gaps[2] < 0.25 * gaps[0]
    # Tables read one by one (each indexed from 0, as from parquet): one row per curve all the same.
    per_width = [pd.concat([r for r in rows if r["m_st"].iloc[0] == w]).reset_index(drop=True) for w in widths]
    assert len(table) == len(rows) + 2 * 2  # one per curve, plus infinite width per teacher and replicate
    pd.testing.assert_frame_equal(convergence_table(pd.concat(per_width)), table)


def test_whole_curves_converge_too():
    U, fit = _teacher(16)
    ts = np.geomspace(10, 1e7, 30)
    L_inf = student_losses_infinite(MODEL, U, fit.coef, ts)
    gaps = [np.max(np.abs(student_losses(MODEL, _student(m), U, fit.coef, ts) / L_inf - 1)) for m in (128, 512, 2048)]
    assert gaps[0] > gaps[1] > gaps[2]


def test_infinite_width_matches_its_truncation_control_and_limits():
    U, fit = _teacher(16)
    ts = GradientFlow([0.0, 1e2, 1e4, 1e8])
    curve = relu_infinite_width(MODEL, U, fit.coef, ts)
    assert curve.losses[0] == pytest.approx(MODEL.target_norm2, rel=1e-14)  # L(0) = F
    assert np.all(curve.error_bound <= 1e-10 * curve.losses)
    # A larger degree changes the loss by no more than the bound said.
    wider = relu_infinite_width(MODEL, U, fit.coef, ts, K=4 * curve.degree)
    assert np.all(np.abs(wider.losses - curve.losses) <= curve.error_bound + 1e-15 * curve.losses)
    # t -> inf: the student becomes the teacher's function, so L -> L_TE.
    assert relu_infinite_width(MODEL, U, fit.coef, GradientFlow([1e30])).losses[0] == pytest.approx(fit.loss,
                                                                                                 rel=1e-6)


def test_too_low_truncation_degree_is_reported_not_used():
    U, fit = _teacher(16, model=relu_sphere(3))
    with pytest.raises(TruncationError, match="degree 4 leaves a relative error"):
        relu_infinite_width(relu_sphere(3), U, fit.coef, GradientFlow([1e6]), K=4)


def test_disagreement_table_flags_a_wrong_curve():
    rows = [dict(method=m, m_st=64.0, m_te=4, replicate=0, t=t, L_ST=L, se=se, L_TE=1.0)
            for t in (1.0, 2.0)
            for m, L, se in (("sampled", 0.50, 0.01), ("finite", 0.51, 0.0), ("infinite", 0.70, 0.0))]
    losses = pd.DataFrame(dict(m_te=[4], m_st=[64], L_ST=[0.5], L_ST_inf=[0.6]))
    table = disagreements(losses, pd.DataFrame(rows)).set_index("comparison")
    assert table.loc["sampled_vs_finite", "max_abs_z"] == pytest.approx(1.0)
    assert table.loc["sampled_vs_infinite", "max_abs_z"] == pytest.approx(20.0)
    assert table.loc["finite_vs_infinite", "max_rel_diff"] == pytest.approx(1 - 0.5 / 0.6)
