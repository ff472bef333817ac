"""Compare an experiment's tables with the reference tables in tests/reference/ (made by the
code before the architecture rework): the same rows, the same numbers to 1e-12 relative, or,
where the Lanczos solver itself reports a looser accuracy for the experiment's curves, to
three times that (a change in the order of a sum moves them by as much as the solver's
own error: measured for fig2 at M_ST = 16384, 2.3e-12 with an achieved tolerance of 1.4e-12)."""
from pathlib import Path

import numpy as np
import pandas as pd

REFERENCE = Path(__file__).resolve().parent / "reference"
RTOL = 1e-12
# Columns renamed since the reference was made: reference name -> name today.
RENAMED = {"steps": "lanczos_steps"}
# Not results but diagnostics or differences of results, compared for what they mean:
# achieved_tol (Lanczos's last change, a difference of nearly equal curves) must stay under
# the tolerance asked for; lanczos_steps at least the reference's; exponent_se (a spread of
# exponents) to 1e-12 of the exponents.
LANCZOS_TOL = 1e-10


def _compare(name: str, ours: pd.DataFrame, reference: pd.DataFrame, rtol: float = RTOL,
             checked: tuple = ()) -> list[str]:
    reference = reference.rename(columns=RENAMED)
    problems = []
    missing = [c for c in reference.columns if c not in ours.columns]
    if missing:
        return [f"{name}: columns {missing} are gone"]
    if len(ours) != len(reference):
        return [f"{name}: {len(ours)} rows, the reference has {len(reference)}"]
    for column in reference.columns:
        if column in checked:
            continue
        a, b = ours[column].to_numpy(), reference[column].to_numpy()
        if column == "lanczos_steps":
            # The strong ceiling's curve joined the convergence test (one more column, stopping no
            # earlier than the teachers' alone): never fewer steps than the reference took.
            if np.any(a < b):
                problems.append(f"{name}.lanczos_steps: fewer steps than the reference took")
            continue
        if column == "achieved_tol":
            if np.any((b <= LANCZOS_TOL) & ~(a <= LANCZOS_TOL)):
                problems.append(f"{name}.achieved_tol: above {LANCZOS_TOL:g} where the reference reached it")
            continue
        if column == "exponent_se":
            exponents = np.abs(reference["exponent"].to_numpy())
            scale = np.max(exponents[np.isfinite(exponents)], initial=0.0)
            if not np.allclose(a, b, rtol=0, atol=rtol * scale, equal_nan=True):
                problems.append(f"{name}.exponent_se: differs by more than {rtol:g} of the exponents")
            continue
        if b.dtype.kind in "fiu":
            a, b = a.astype(float), b.astype(float)
            same_nan = np.isnan(a) == np.isnan(b)
            close = np.isclose(a, b, rtol=rtol, atol=0) | (np.isnan(a) & np.isnan(b))
            if not (same_nan.all() and close.all()):
                worst = np.nanmax(np.abs(a - b) / np.abs(b))
                problems.append(f"{name}.{column}: differs by up to {worst:.2e} relative")
        elif not np.array_equal(a, b):
            problems.append(f"{name}.{column}: values differ")
    return problems


def line_sensitivity(x, y) -> tuple[float, float]:
    """First-order bounds on how far the least-squares line ``y = a x + b`` moves, in ``a`` and
    in ``b``, when every ``x_i`` and ``y_i`` moves by at most 1 (sums of the absolute partial
    derivatives; log L within rtol relative moves by at most rtol)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = x - x.mean()
    S = d @ d
    a = d @ (y - y.mean()) / S
    da_dy, da_dx = d / S, (y - y.mean() - 2 * a * d) / S
    db_dy, db_dx = 1 / len(x) - x.mean() * da_dy, -a / len(x) - x.mean() * da_dx
    return float(np.abs(da_dy).sum() + np.abs(da_dx).sum()), float(np.abs(db_dy).sum() + np.abs(db_dx).sum())


def _fit_slack(fit: pd.DataFrame, summary: pd.DataFrame, single: bool) -> np.ndarray:
    """Per fit row, twice (rounding and second order) its line's sensitivity, from the
    summary rows it was fitted to; a row that matches no summary rows gets 0 (then only the
    relative test applies)."""
    slack = np.zeros((len(fit), 2))
    for i, row in enumerate(fit.itertuples(index=False)):
        rows = summary if single else summary[summary["m_st"] == row.m_st]
        if row.scope == "replicate":
            rows = rows[rows["replicate"] == row.replicate]
        y = rows["L_ST_min" if row.width == "finite" else "L_ST_inf_min"].to_numpy(float)
        if len(rows) == row.n_points and len(rows) > 1 and np.all(y > 0):
            slack[i] = 2.0 * np.array(line_sensitivity(np.log(rows["L_TE"]), np.log(y)))
    return slack


def differences(results: Path, config: str, experiment: str) -> list[str]:
    """What differs between ``results/<experiment>`` and the reference of ``config``."""
    ref = REFERENCE / config / experiment
    problems = []
    losses = {"ours": pd.read_parquet(results / experiment / "losses.parquet"),
              "reference": pd.read_parquet(ref / "losses.parquet")}
    achieved = np.concatenate([t["achieved_tol"].to_numpy() for t in losses.values()])
    achieved = achieved[np.isfinite(achieved)]  # NaN: eigh; inf: no check made (the space exhausted)
    rtol = min(max(RTOL, 3.0 * np.max(achieved, initial=0.0)), LANCZOS_TOL)
    problems += _compare(f"{experiment}/losses", losses["ours"], losses["reference"], rtol)
    problems += _compare(f"{experiment}/summary", pd.read_parquet(results / experiment / "summary.parquet"),
                         pd.read_parquet(ref / "summary.parquet"), rtol)
    # fit: the reference marked "one student width per teacher" with m_st = -1; today m_st is
    # that width (or missing where it varies with the teacher). Rows match in order otherwise.
    ours, reference = (pd.read_parquet(p) for p in (results / experiment / "fit.parquet", ref / "fit.parquet"))
    # Pooled rows had replicate = -1; today it is missing there.
    reference["replicate"] = reference["replicate"].astype(float).where(reference["scope"] != "all")
    ours["replicate"] = ours["replicate"].astype(float)
    single = (reference["m_st"] == -1).all()
    summary = pd.read_parquet(ref / "summary.parquet")
    if single:
        widths = summary["m_st"].unique()
        expected = widths[0] if len(widths) == 1 else None
        got = ours["m_st"].dropna().unique()
        if (expected is None and len(got)) or (expected is not None and list(got) != [expected]):
            problems.append(f"{experiment}/fit.m_st: {list(got)} where the student width is {expected}")
    # The exponent and the intercept are a line fitted to (log L_TE, log L_ST_min): losses within
    # rtol move them by up to rtol times the line's sensitivity to its points, which a test
    # relative to their own size misjudges (the intercept is near 0 for some fits).
    slack = _fit_slack(reference, summary, single)
    for column, allowed in zip(("exponent", "intercept"), (rtol * slack).T):
        a, b = ours[column].to_numpy(float), reference[column].to_numpy(float)
        off = np.abs(a - b) > allowed + rtol * np.abs(b)
        if np.any(off | (np.isnan(a) != np.isnan(b))):
            problems.append(f"{experiment}/fit.{column}: differs by up to {np.nanmax(np.abs(a - b)):.2e}, "
                            f"more than losses within {rtol:g} can move it")
    if single:
        ours, reference = ours.drop(columns="m_st"), reference.drop(columns="m_st")
    problems += _compare(f"{experiment}/fit", ours, reference, rtol, checked=("exponent", "intercept"))
    return problems
