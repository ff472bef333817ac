"""Tables: best time per teacher, and the log-log exponent fit."""
import numpy as np
import pandas as pd
import pytest

from rfw2s.analysis import (fit_exponents, loglog_fit, overall_fit, performance_gap_recovered, sort_losses, summarize,
                            undefined_pgr)


def _synthetic_losses(exponents, rng):
    """Curves whose minimum is L_TE**a times a per-replicate constant, at a known t."""
    rows = []
    ts = np.geomspace(1, 1e4, 9)
    for rep, a in enumerate(exponents):
        for m_te, L_TE in zip((16, 32, 64), (1e-2, 3e-3, 1e-3)):
            best = 0.5 * L_TE**a
            L_ST = best * (1 + np.log(ts / ts[4]) ** 2)  # minimum at ts[4]
            for t, L in zip(ts, L_ST):
                rows.append(dict(replicate=rep, m_te=m_te, m_st=256, n=np.inf, rule="gradient_flow", d=4, grid=t, t=t,
                                 L_TE=L_TE, L_ST=L, ratio=L / L_TE,
                                 L_ST_inf=L / 2, ratio_inf=L / (2 * L_TE), L_floor=0.0, L_ceiling=L / 4,
                                 accuracy_TE=np.nan, accuracy_ST=np.nan, accuracy_ceiling=np.nan, solver="eigh",
                                 lanczos_steps=0, achieved_tol=np.nan))
    return pd.DataFrame(rows).sample(frac=1.0, random_state=rng.integers(1 << 31))


def test_summary_takes_the_best_time_of_each_curve(rng):
    losses = sort_losses(_synthetic_losses([1.5, 1.5], rng))
    summary = summarize(losses)
    assert len(summary) == 6
    assert np.allclose(summary["t_best"], np.geomspace(1, 1e4, 9)[4])
    assert np.allclose(summary["L_ST_min"], 0.5 * summary["L_TE"] ** 1.5)
    assert np.allclose(summary["ratio_best"], summary["L_ST_min"] / summary["L_TE"])


def test_fit_recovers_known_exponents_and_their_spread(rng):
    exponents = [1.4, 1.6, 1.8]
    fit = fit_exponents(summarize(sort_losses(_synthetic_losses(exponents, rng))), by=[])
    for width in ("finite", "infinite"):  # the infinite curves are the finite ones halved
        per_rep = fit[(fit["scope"] == "replicate") & (fit["width"] == width)]
        assert np.allclose(per_rep["exponent"], exponents)
        overall = overall_fit(fit, width)
        assert overall["exponent"] == pytest.approx(np.mean(exponents), rel=1e-10)
        assert overall["exponent_se"] == pytest.approx(np.std(exponents, ddof=1) / np.sqrt(3))
        assert overall["n_points"] == 9
    assert np.allclose(overall_fit(fit, "infinite")["intercept"], overall_fit(fit, "finite")["intercept"] - np.log(2))


def test_models_without_an_infinite_width_solution_get_nan_columns(rng):
    losses = _synthetic_losses([1.5, 1.5], rng).assign(L_ST_inf=np.nan, ratio_inf=np.nan)
    summary = summarize(sort_losses(losses))
    assert summary["ratio_inf_best"].isna().all() and summary["ratio_best"].notna().all()
    assert np.isnan(overall_fit(fit_exponents(summary, by=[]), "infinite")["exponent"])


def test_loglog_fit_needs_two_distinct_teacher_losses():
    assert np.isnan(loglog_fit([1e-2], [1e-3])[0])
    assert np.isnan(loglog_fit([1e-2, 1e-2], [1e-3, 2e-3])[0])
    assert loglog_fit([1e-2, 1e-4], [1e-4, 1e-8])[0] == pytest.approx(2.0)


def test_loss_table_without_required_columns_is_refused():
    with pytest.raises(ValueError, match="lacks columns"):
        sort_losses(pd.DataFrame({"t": [1.0]}))


def test_a_fit_per_width_or_over_every_teacher_names_its_student_width(rng):
    summary = summarize(sort_losses(_synthetic_losses([1.5, 1.7], rng)))
    wider = summary.assign(m_st=512, L_ST_min=summary["L_ST_min"] / 2)
    both = pd.concat([summary, wider], ignore_index=True)
    per_width = fit_exponents(both, by=["m_st"])
    assert sorted(per_width["m_st"].unique()) == [256, 512]
    assert overall_fit(per_width, m_st=512)["exponent"] == pytest.approx(1.6)
    with pytest.raises(ValueError, match="name the swept value"):
        overall_fit(per_width)
    # A list of one width is still per width; one width per teacher gives that width, and a
    # width varying with the teacher (M_ST = 2 d) is missing, not a sentinel number.
    assert fit_exponents(summary, by=["m_st"])["m_st"].tolist() == [256] * 6
    fit = fit_exponents(summary, by=[])
    assert fit["m_st"].tolist() == [256] * 6 and fit["rule"].tolist() == ["gradient_flow"] * 6
    assert fit.loc[fit["scope"] == "all", "replicate"].isna().all()  # pooled: no replicate, not -1
    varying = summary.assign(m_st=summary["m_te"] * 4)
    assert fit_exponents(varying, by=[])["m_st"].isna().all()
    # A fit per learning rule, and per sample size with the population (n = inf) among them.
    rules = pd.concat([summary, summary.assign(rule="ridge", L_ST_min=summary["L_ST_min"] ** 1.1)])
    per_rule = fit_exponents(rules, by=["rule"])
    assert set(per_rule["rule"]) == {"gradient_flow", "ridge"}
    assert overall_fit(per_rule, rule="ridge")["exponent"] == pytest.approx(1.1 * 1.6)
    sizes = pd.concat([summary, summary.assign(n=512.0)])
    assert sorted(fit_exponents(sizes, by=["n"])["n"].unique()) == [512.0, np.inf]


def test_pgr_is_0_at_the_teacher_1_at_the_ceiling_and_undefined_where_the_ceiling_is_no_better():
    assert performance_gap_recovered(0.3, 0.3, 0.1) == 0.0
    assert performance_gap_recovered(0.3, 0.1, 0.1) == 1.0
    assert performance_gap_recovered(0.3, 0.2, 0.1) == pytest.approx(0.5)
    assert performance_gap_recovered(0.8, 0.9, 1.0, higher_is_better=True) == pytest.approx(0.5)
    assert performance_gap_recovered(0.8, 0.8, 1.0, higher_is_better=True) == 0.0
    for weak, ceiling, higher in ((0.1, 0.1, False), (0.1, 0.2, False), (0.9, 0.9, True), (0.9, 0.8, True)):
        assert np.isnan(performance_gap_recovered(weak, 0.05, ceiling, higher_is_better=higher))


def test_the_summary_holds_the_ceiling_and_pgr_with_reasons_for_the_undefined(rng):
    losses = _synthetic_losses([1.5], rng)
    losses["accuracy_TE"] = 0.7
    losses["accuracy_ST"] = np.where(losses["t"] == losses["t"].max(), 0.8, 0.75)
    losses["accuracy_ceiling"] = 0.9
    summary = summarize(sort_losses(losses))
    # The ceiling's curve is the student's over 4: its best is the student's best over 4.
    assert np.allclose(summary["L_ceiling"], summary["L_ST_min"] / 4)
    want = (summary["L_TE"] - summary["L_ST_min"]) / (summary["L_TE"] - summary["L_ST_min"] / 4)
    assert np.allclose(summary["pgr"], want)
    assert np.allclose(summary["best_accuracy_ST"], 0.8) and np.allclose(summary["pgr_accuracy"], 0.5)
    assert undefined_pgr(summary) == []
    losses["accuracy_ceiling"] = 0.6  # no better than the teacher: undefined, and said why
    summary = summarize(sort_losses(losses))
    assert summary["pgr_accuracy"].isna().all() and summary["pgr"].notna().all()
    notes = undefined_pgr(summary)
    assert len(notes) == len(summary) and "accuracy_ceiling 0.6 is no higher than the teacher's accuracy_TE 0.7" in notes[0]
