"""Tables: one student draw's loss curves as rows, the best early-stopped student per
teacher, and the log-log exponent of ``min_t L_ST`` against ``L_TE`` (``numpy.polyfit``, as
the paper does), for the finite width and, where the model has one, the exact
infinite-width solution."""
from __future__ import annotations

import numpy as np
import pandas as pd

# Bump when a change alters the numbers of the experiment tables (summary, fit).
TABLES_VERSION = "1"

LOSS_COLUMNS = ["replicate", "m_te", "m_st", "d", "t", "L_TE", "L_ST", "ratio", "L_ST_inf", "ratio_inf",
                "solver", "lanczos_steps", "achieved_tol"]
SUMMARY_COLUMNS = ["replicate", "m_te", "m_st", "L_TE", "L_ST_min", "t_best", "ratio_best",
                   "L_ST_inf_min", "t_inf_best", "ratio_inf_best"]
FIT_COLUMNS = ["m_st", "width", "scope", "replicate", "exponent", "exponent_se", "intercept", "n_points"]
KEYS = ["replicate", "m_te", "m_st"]  # one curve


def curve_table(replicate: int, W, teachers, rule, result, infinite) -> pd.DataFrame:
    """Rows of :data:`LOSS_COLUMNS` for one student draw ``W``: ``result`` are its exact curves
    (:class:`rfw2s.curves.Curves`) for the ``teachers`` (each ``{"coef", "loss"}``),
    ``infinite`` the infinite-width curve of each teacher (or ``None`` per teacher where the
    model has none)."""
    m_st, d = W.shape
    grid = rule.grid
    frames = []
    for teacher, L_ST, curve in zip(teachers, result.losses, infinite):
        L_inf = np.full_like(grid, np.nan) if curve is None else curve.losses
        L_TE = float(teacher["loss"])
        frames.append(pd.DataFrame({
            "replicate": replicate, "m_te": int(teacher["coef"].size), "m_st": m_st, "d": d, "t": grid,
            "L_TE": L_TE, "L_ST": L_ST, "ratio": L_ST / L_TE, "L_ST_inf": L_inf, "ratio_inf": L_inf / L_TE,
            "solver": result.solver, "lanczos_steps": result.steps, "achieved_tol": result.achieved_tol}))
    return pd.concat(frames, ignore_index=True)[LOSS_COLUMNS]


def sort_losses(losses: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in LOSS_COLUMNS if c not in losses.columns]
    if missing:
        raise ValueError(f"loss table lacks columns {missing}")
    return losses[LOSS_COLUMNS].sort_values(KEYS + ["t"], kind="stable").reset_index(drop=True)


def _best(losses: pd.DataFrame, column: str) -> pd.DataFrame:
    """Row of the smallest ``column`` per curve; NaN rows where it is all NaN."""
    keys = KEYS
    losses = losses.reset_index(drop=True)  # idxmin gives labels, which must be unique
    if losses[column].isna().all():
        return losses.groupby(keys, sort=True).first().reset_index()[keys].assign(**{column: np.nan, "t": np.nan})
    return losses.loc[losses.groupby(keys, sort=True)[column].idxmin()].reset_index(drop=True)


def summarize(losses: pd.DataFrame) -> pd.DataFrame:
    """One row per curve (replicate, m_te, m_st): the best time on the grid and its loss
    (finite and infinite width)."""
    finite = _best(losses, "L_ST")[KEYS + ["L_TE", "L_ST", "t"]]
    finite = finite.rename(columns={"L_ST": "L_ST_min", "t": "t_best"})
    finite["ratio_best"] = finite["L_ST_min"] / finite["L_TE"]
    infinite = _best(losses, "L_ST_inf")[KEYS + ["L_ST_inf", "t"]]
    infinite = infinite.rename(columns={"L_ST_inf": "L_ST_inf_min", "t": "t_inf_best"})
    out = finite.merge(infinite, on=KEYS, how="left", validate="one_to_one")
    out["ratio_inf_best"] = out["L_ST_inf_min"] / out["L_TE"]
    return out[SUMMARY_COLUMNS].sort_values(KEYS).reset_index(drop=True)


def loglog_fit(L_TE, L_ST_min) -> tuple[float, float]:
    """Slope and intercept of ``log L_ST_min = a log L_TE + b`` (``numpy.polyfit``)."""
    x, y = np.log(np.asarray(L_TE, float)), np.log(np.asarray(L_ST_min, float))
    if len(x) < 2 or np.ptp(x) == 0 or not np.all(np.isfinite(y)):
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def fit_exponents(summary: pd.DataFrame, per_width: bool) -> pd.DataFrame:
    """The exponent per replicate, and pooled over all replicates with its standard error
    over replicates (std of the per-replicate exponents / sqrt(count)); rows for the finite
    width and for the infinite width (NaN where the model has no infinite-width solution).

    ``per_width`` (an experiment over a list of student widths): one set of rows per width
    ``m_st``. Otherwise one set over every teacher, whose ``m_st`` is the student width, or
    missing (``<NA>``) where it varies with the teacher (``m_st: {d_factor: f}``)."""
    if per_width:
        parts = list(summary.groupby("m_st", sort=True))
    else:
        widths = summary["m_st"].unique()
        parts = [(widths[0] if len(widths) == 1 else pd.NA, summary)]
    fit = pd.concat([_fit_one_width(part).assign(m_st=m_st) for m_st, part in parts], ignore_index=True)
    return fit.astype({"m_st": "Int64"})[FIT_COLUMNS]


def _fit_one_width(summary: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for width, column in (("finite", "L_ST_min"), ("infinite", "L_ST_inf_min")):
        per_rep = []
        for rep, part in summary.groupby("replicate", sort=True):
            a, b = loglog_fit(part["L_TE"], part[column])
            per_rep.append({"width": width, "scope": "replicate", "replicate": int(rep), "exponent": a,
                            "exponent_se": float("nan"), "intercept": b, "n_points": len(part)})
        slopes = np.array([r["exponent"] for r in per_rep if np.isfinite(r["exponent"])])
        se = float(slopes.std(ddof=1) / np.sqrt(len(slopes))) if len(slopes) > 1 else float("nan")
        a, b = loglog_fit(summary["L_TE"], summary[column])
        rows.append({"width": width, "scope": "all", "replicate": -1, "exponent": a, "exponent_se": se,
                     "intercept": b, "n_points": len(summary)})
        rows += per_rep
    return pd.DataFrame(rows)


def overall_fit(fit: pd.DataFrame, width: str = "finite", m_st=None) -> pd.Series:
    """The pooled fit row of one width kind: of student width ``m_st`` in a per-width fit,
    else the only one."""
    rows = fit[(fit["width"] == width) & (fit["scope"] == "all")]
    if m_st is not None:
        rows = rows[rows["m_st"] == m_st]
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} pooled {width}-width fits; name the student width m_st")
    return rows.iloc[0]
