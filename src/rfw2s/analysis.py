"""Tables: one student draw's loss curves as rows, the best early-stopped student per
teacher, and the log-log exponent of ``min_t L_ST`` against ``L_TE`` (``numpy.polyfit``, as
the paper does), for the finite width and, where the model has one, the exact
infinite-width solution."""
from __future__ import annotations

import numpy as np

# pandas is imported where a table is assembled from others, not at the top: a curve job
# writes its rows (curve_columns) without it, and spares its start-up.

# Bump when a change alters the numbers of the experiment tables (summary, fit).
TABLES_VERSION = "2"

LOSS_COLUMNS = ["replicate", "m_te", "m_st", "n", "rule", "d", "grid", "t", "L_TE", "L_ST", "ratio", "L_ST_inf",
                "ratio_inf", "L_floor", "L_ceiling", "accuracy_TE", "accuracy_ST", "accuracy_ceiling", "solver",
                "lanczos_steps", "achieved_tol"]
SUMMARY_COLUMNS = ["replicate", "m_te", "m_st", "n", "rule", "L_TE", "L_ST_min", "grid_best", "t_best", "ratio_best",
                   "L_ST_inf_min", "grid_inf_best", "t_inf_best", "ratio_inf_best", "L_floor", "L_ceiling", "pgr",
                   "accuracy_TE", "best_accuracy_ST", "accuracy_ceiling", "pgr_accuracy"]
DEGREE_COLUMNS = ["replicate", "m_te", "rule", "degree", "grid", "t", "L_ST_inf", "L_TE"]
FIT_COLUMNS = ["m_st", "n", "rule", "width", "scope", "replicate", "exponent", "exponent_se", "intercept",
               "n_points"]
KEYS = ["replicate", "m_te", "m_st", "n", "rule"]  # one curve
# Columns a fit may be made per value of (an experiment sweeps them).
AXES = ("m_st", "n", "rule")


def curve_columns(replicate: int, W, teachers, rule, result, infinite, floor: float = float("nan"),
                  n: float = np.inf) -> dict[str, np.ndarray]:
    """The columns (:data:`LOSS_COLUMNS`) of one student draw's rows, as NumPy arrays: ``W``
    trained on ``n`` inputs (``inf``: the population), ``result`` its exact curves
    (:class:`rfw2s.curves.Curves`, for the filter ``result.rule``, a RuleSet for several rules)
    for the ``teachers`` (each ``{"coef", "loss"}``), ``infinite`` the infinite-width curve of
    each teacher (``None`` where there is none), ``floor`` the part of the target no student
    can learn (NaN: unknown)."""
    from .spectral import each_rule

    m_st, d = W.shape
    rules = each_rule(result.rule)
    columns = {name: [] for name in LOSS_COLUMNS}
    nan = np.full_like(result.ceiling, np.nan)
    for i, (teacher, L_ST, curve) in enumerate(zip(teachers, result.losses, infinite)):
        L_inf = nan if curve is None else curve.losses
        # Measured where the student is: the teacher's own loss, or on a split's test rows.
        L_TE = float(teacher["loss"] if result.teacher_losses is None else result.teacher_losses[i])
        accuracy_TE = np.nan if result.teacher_accuracy is None else float(result.teacher_accuracy[i])
        accuracy_ST = nan if result.accuracy is None else result.accuracy[i]
        accuracy_ceiling = nan if result.ceiling_accuracy is None else result.ceiling_accuracy
        start = 0
        for r in rules:
            part = slice(start, start + r.grid.size)
            start += r.grid.size
            values = {"replicate": replicate, "m_te": int(teacher["coef"].shape[0]), "m_st": m_st, "n": float(n),
                      "rule": r.name, "d": d, "grid": r.grid, "t": r.times, "L_TE": L_TE, "L_ST": L_ST[part],
                      "ratio": L_ST[part] / L_TE, "L_ST_inf": L_inf[part], "ratio_inf": L_inf[part] / L_TE,
                      "L_floor": float(floor), "L_ceiling": result.ceiling[part], "accuracy_TE": accuracy_TE,
                      "accuracy_ST": accuracy_ST[part], "accuracy_ceiling": accuracy_ceiling[part],
                      "solver": result.solver, "lanczos_steps": result.steps, "achieved_tol": result.achieved_tol}
            for name, value in values.items():
                columns[name].append(np.broadcast_to(np.asarray(value), (r.grid.size,)))
    return {name: np.concatenate(parts) for name, parts in columns.items()}


def best_points(columns: dict[str, np.ndarray]) -> list[tuple]:
    """``(replicate, m_te, rule, best ratio, grid value there)`` of each curve in a curve job's
    columns (:func:`curve_columns`), in the order they appear."""
    found = []
    keys = list(zip(columns["replicate"].tolist(), columns["m_te"].tolist(), columns["rule"].tolist()))
    for key in dict.fromkeys(keys):
        rows = np.flatnonzero([k == key for k in keys])
        best = rows[np.argmin(columns["L_ST"][rows])]
        found.append((*key, float(columns["ratio"][best]), float(columns["grid"][best])))
    return found


def overview(summary: pd.DataFrame, fit: pd.DataFrame) -> str:
    """An experiment's numbers as text (``python -m rfw2s summary``): the means over replicates
    of each curve's best point, and the pooled fitted exponents."""
    import pandas as pd

    columns = dict(L_TE=("L_TE", "mean"), L_ST_min=("L_ST_min", "mean"), ratio_best=("ratio_best", "mean"),
                   ratio_spread=("ratio_best", lambda r: r.max() - r.min()), grid_best=("grid_best", "median"),
                   ratio_inf_best=("ratio_inf_best", "mean"), L_ceiling=("L_ceiling", "mean"), pgr=("pgr", "mean"))
    if summary["accuracy_TE"].notna().any():
        columns.update(accuracy_TE=("accuracy_TE", "mean"), best_accuracy_ST=("best_accuracy_ST", "mean"),
                       accuracy_ceiling=("accuracy_ceiling", "mean"), pgr_accuracy=("pgr_accuracy", "mean"))
    table = summary.groupby(["rule", "n", "m_st", "m_te"]).agg(**columns)
    lines = [f"{summary['replicate'].nunique()} replicates (means over replicates); L_ceiling: the same student "
             "trained on the truth; pgr = (L_TE - L_ST_min) / (L_TE - L_ceiling), the performance gap recovered "
             "(the student's and the ceiling's best over the grid: oracle early stopping)"]
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 200,
                           "display.max_columns", 40):
        lines.append(table.to_string())
    for _, row in fit[fit["scope"] == "all"].iterrows():
        if np.isfinite(row["exponent"]):
            where = " (M_ST varies with M_TE)" if pd.isna(row["m_st"]) else f" at M_ST = {row['m_st']}"
            where += "" if row["n"] == np.inf else f", n = {row['n']:g}"
            lines.append(f"fitted exponent, {row['rule']}, {row['width']} width{where} (log min L_ST vs log L_TE): "
                         f"{row['exponent']:.3f} ± {row['exponent_se']:.3f} (standard error over replicates)")
    return "\n".join(lines)


def tables(curves: pd.DataFrame, fit_by) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """An experiment's ``(losses, summary, fit)`` from its curve tables, concatenated."""
    losses = sort_losses(curves)
    summary = summarize(losses)
    return losses, summary, fit_exponents(summary, by=fit_by)


def sort_losses(losses: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in LOSS_COLUMNS if c not in losses.columns]
    if missing:
        raise ValueError(f"loss table lacks columns {missing}")
    return losses[LOSS_COLUMNS].sort_values(KEYS + ["grid"], kind="stable").reset_index(drop=True)


def _best(losses: pd.DataFrame, column: str) -> pd.DataFrame:
    """The row of the smallest ``column`` of each curve (every curve: NaN where it has none)."""
    losses = losses.reset_index(drop=True)  # idxmin gives labels, which must be unique
    curves = losses[KEYS].drop_duplicates().sort_values(KEYS).reset_index(drop=True)
    valid = losses[losses[column].notna()]
    best = valid.loc[valid.groupby(KEYS, sort=True)[column].idxmin()]
    return curves.merge(best.drop(columns=[c for c in best.columns if c not in KEYS + [column, "grid", "t", "L_TE",
                                                                                         "L_floor"]]),
                        on=KEYS, how="left", validate="one_to_one")


def performance_gap_recovered(weak, strong, ceiling, higher_is_better: bool = False):
    """Burns et al.'s PGR, ``(weak - strong) / (weak - ceiling)``: 0 where the student does only as
    well as its teacher, 1 where as well as the same student trained on the truth. NaN where the
    ceiling is no better than the teacher (the denominator is not positive)."""
    weak, strong, ceiling = (np.asarray(a, dtype=np.float64) for a in (weak, strong, ceiling))
    gap = (ceiling - weak) if higher_is_better else (weak - ceiling)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(gap > 0, (weak - strong) / (weak - ceiling), np.nan)


def summarize(losses: pd.DataFrame) -> pd.DataFrame:
    """One row per curve (replicate, m_te, m_st, n, rule): the best grid value (and its time)
    and the loss there, finite and infinite width; the strong ceiling's best loss and the PGR;
    where the target has classes, the teacher's accuracy, the best of the student's and of the
    ceiling's, and the accuracy PGR. Every best is over the grid ("oracle" early stopping)."""
    finite = _best(losses, "L_ST")[KEYS + ["L_TE", "L_ST", "grid", "t", "L_floor"]]
    finite = finite.rename(columns={"L_ST": "L_ST_min", "grid": "grid_best", "t": "t_best"})
    finite["ratio_best"] = finite["L_ST_min"] / finite["L_TE"]
    infinite = _best(losses, "L_ST_inf")[KEYS + ["L_ST_inf", "grid", "t"]]
    infinite = infinite.rename(columns={"L_ST_inf": "L_ST_inf_min", "grid": "grid_inf_best", "t": "t_inf_best"})
    out = finite.merge(infinite, on=KEYS, how="left", validate="one_to_one")
    out["ratio_inf_best"] = out["L_ST_inf_min"] / out["L_TE"]
    best = losses.groupby(KEYS, sort=True).agg(L_ceiling=("L_ceiling", "min"), accuracy_TE=("accuracy_TE", "first"),
                                               best_accuracy_ST=("accuracy_ST", "max"),
                                               accuracy_ceiling=("accuracy_ceiling", "max")).reset_index()
    out = out.merge(best, on=KEYS, how="left", validate="one_to_one")
    out["pgr"] = performance_gap_recovered(out["L_TE"], out["L_ST_min"], out["L_ceiling"])
    out["pgr_accuracy"] = performance_gap_recovered(out["accuracy_TE"], out["best_accuracy_ST"],
                                                    out["accuracy_ceiling"], higher_is_better=True)
    return out[SUMMARY_COLUMNS].sort_values(KEYS).reset_index(drop=True)


def undefined_pgr(summary: pd.DataFrame) -> list[str]:
    """Why each undefined PGR of a summary is undefined (its ceiling no better than its teacher)."""
    notes = []
    for column, weak, ceiling, better in (("pgr", "L_TE", "L_ceiling", "lower"),
                                          ("pgr_accuracy", "accuracy_TE", "accuracy_ceiling", "higher")):
        rows = summary[summary[column].isna() & summary[ceiling].notna() & summary[weak].notna()]
        for _, row in rows.iterrows():
            notes.append(f"{column} undefined for replicate {row['replicate']}, M_TE = {row['m_te']}, M_ST = "
                         f"{row['m_st']}, {row['rule']}: the ceiling's {ceiling} {row[ceiling]:.6g} is no "
                         f"{better} than the teacher's {weak} {row[weak]:.6g}")
    return notes


def degree_table(replicate: int, teacher: dict, rule, curve, degrees, remainder: float = 0.0) -> pd.DataFrame:
    """Rows of :data:`DEGREE_COLUMNS`: the infinite-width student's loss (``curve``, an
    :class:`rfw2s.models.InfiniteWidthCurve` with ``per_degree``, for the filter ``rule``) and
    the teacher's error in each of ``degrees``, in every other degree together (``rest``) and,
    where the inputs leave one, in the part of a constant no feature reaches (``radial``); the
    parts sum to the totals."""
    import pandas as pd

    from .spectral import each_rule

    if curve.per_degree is None or max(degrees) > curve.degree:
        raise ValueError(f"the infinite-width curve has no breakdown to degree {max(degrees)}")
    L_TE = float(teacher["loss"])
    parts = {str(k): (curve.per_degree[k], float(curve.teacher_per_degree[k])) for k in degrees}
    listed = sum(p[0] for p in parts.values())
    listed_te = sum(p[1] for p in parts.values())
    parts["rest"] = (curve.losses - listed - remainder, L_TE - listed_te - remainder)
    if remainder:
        parts["radial"] = (np.full_like(curve.losses, remainder), remainder)
    m_te = int(teacher["coef"].shape[0])
    frames, start = [], 0
    for r in each_rule(rule):
        grid = slice(start, start + r.grid.size)
        start += r.grid.size
        frames += [pd.DataFrame({"replicate": replicate, "m_te": m_te, "rule": r.name, "degree": name, "grid": r.grid,
                                 "t": r.times, "L_ST_inf": L[grid], "L_TE": L_te})
                   for name, (L, L_te) in parts.items()]
    return pd.concat(frames, ignore_index=True)[DEGREE_COLUMNS]


def loglog_fit(L_TE, L_ST_min) -> tuple[float, float]:
    """Slope and intercept of ``log L_ST_min = a log L_TE + b`` (``numpy.polyfit``)."""
    x, y = np.log(np.asarray(L_TE, float)), np.log(np.asarray(L_ST_min, float))
    if len(x) < 2 or np.ptp(x) == 0 or not np.all(np.isfinite(y)):
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def fit_exponents(summary: pd.DataFrame, by=()) -> pd.DataFrame:
    """The exponent per replicate, and pooled over all replicates with its standard error
    over replicates (std of the per-replicate exponents / sqrt(count)); rows for the finite
    width and for the infinite width (NaN where the model has no infinite-width solution).

    ``by``: the columns of :data:`AXES` the experiment sweeps; one set of rows per value of
    them. A column not swept holds its one value, or missing (``<NA>``) where it varies (the
    student width of ``m_st: {d_factor: f}``); ``replicate`` is missing on pooled rows."""
    import pandas as pd

    by = list(by)
    parts = list(summary.groupby(by, sort=True)) if by else [((), summary)]
    frames = []
    for values, part in parts:
        fit = _fit_one_group(part)
        values = values if isinstance(values, tuple) else (values,)
        for axis in AXES:
            if axis in by:
                fit[axis] = values[by.index(axis)]
            else:
                unique = part[axis].unique()
                fit[axis] = unique[0] if len(unique) == 1 else pd.NA
        frames.append(fit)
    fit = pd.concat(frames, ignore_index=True)
    return fit.astype({"m_st": "Int64", "replicate": "Int64", "n": float})[FIT_COLUMNS]


def _fit_one_group(summary: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

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
        rows.append({"width": width, "scope": "all", "replicate": pd.NA, "exponent": a, "exponent_se": se,
                     "intercept": b, "n_points": len(summary)})
        rows += per_rep
    return pd.DataFrame(rows)


def overall_fit(fit: pd.DataFrame, width: str = "finite", **where) -> pd.Series:
    """The pooled fit row of one width kind, of the swept values ``where`` (``m_st=``, ``n=``,
    ``rule=``) where there are several."""
    rows = fit[(fit["width"] == width) & (fit["scope"] == "all")]
    for column, value in where.items():
        rows = rows[rows[column] == value]
    if len(rows) != 1:
        raise ValueError(f"{len(rows)} pooled {width}-width fits; name the swept value ({', '.join(AXES)})")
    return rows.iloc[0]
