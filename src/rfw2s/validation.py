"""Three independent computations of the student's loss, and how far apart they are.

1. exact finite width (the population kernel of the student's own features, by the
   pipeline's solver: :func:`rfw2s.curves.exact_curves`);
2. exact infinite width (the model's own solution, ``model.infinite_width``);
3. real training on samples (:mod:`rfw2s.sample`), with Monte Carlo standard errors.

(1) and (2) differ by a finite-width effect that must shrink as ``M_ST`` grows (the
convergence table); (3) must land on (1) for the same features within a few standard
errors.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .backend import as_backend
from .curves import exact_curves
from .sample import largest_stable_step, train_students
from .spectral import GradientFlow

CURVE_COLUMNS = ["method", "m_st", "m_te", "replicate", "t", "L_ST", "se", "L_TE"]
CONVERGENCE_COLUMNS = ["m_st", "m_te", "replicate", "ratio_best", "t_best"]
DISAGREEMENT_COLUMNS = ["comparison", "m_te", "m_st", "max_rel_diff", "max_abs_z", "n_points"]


def convergence_table(curves: pd.DataFrame) -> pd.DataFrame:
    """Best ratio on the grid per (student width, teacher, replicate), from curve tables at
    several widths; ``m_st = inf`` rows from the exact infinite-width columns (the same for
    every width, since they depend on the teacher alone)."""
    keys = ["m_st", "m_te", "replicate"]
    curves = curves.reset_index(drop=True)  # idxmin gives labels: tables read one by one repeat them
    best = curves.loc[curves.groupby(keys)["L_ST"].idxmin()]
    rows = best.assign(ratio_best=best["L_ST"] / best["L_TE"], m_st=best["m_st"].astype(float))
    tables = [rows.rename(columns={"t": "t_best"})[CONVERGENCE_COLUMNS]]
    if curves["L_ST_inf"].notna().any():
        widest = curves[curves["m_st"] == curves["m_st"].max()]
        inf = widest.loc[widest.groupby(["m_te", "replicate"])["L_ST_inf"].idxmin()]
        tables.append(inf.assign(m_st=np.inf, ratio_best=inf["L_ST_inf"] / inf["L_TE"])
                      .rename(columns={"t": "t_best"})[CONVERGENCE_COLUMNS])
    return pd.concat(tables, ignore_index=True).sort_values(["m_te", "replicate", "m_st"], ignore_index=True)


def sampled_comparison(model, W, teachers, sampled: dict, seed, replicate=0, backend="numpy",
                       **solve_options) -> pd.DataFrame:
    """Sampled-data training of student ``W`` against both exact curves.

    ``solve_options`` go to :func:`rfw2s.curves.exact_curves` (operator, the cached spectrum
    or kernel, Lanczos settings); ``teachers`` maps ``m_te -> (U, coef, L_TE)``; ``sampled`` holds ``runs, batch, t_max,
    points`` and optionally ``step_fraction``. Returns rows of :data:`CURVE_COLUMNS`: the
    sampled points, and the exact curves on a dense grid that contains the sampled times.
    """
    be = as_backend(backend)
    sizes = sorted(teachers)
    pairs = [(teachers[m][0], teachers[m][1]) for m in sizes]
    m_st = W.shape[0]
    ts = np.geomspace(sampled["t_max"] / 100.0, sampled["t_max"], int(sampled["points"]))
    options = {"runs": int(sampled["runs"]), "batch": int(sampled["batch"]), "seed": seed, "backend": be}
    if "step_fraction" in sampled:
        options["eta"] = float(sampled["step_fraction"]) * largest_stable_step(model, W, be)
    measured = train_students(model, W, pairs, ts, **options)
    achieved = measured[0].ts
    dense = np.union1d(np.geomspace(sampled["t_max"] / 300.0, 3.0 * sampled["t_max"], 60), achieved)
    finite = exact_curves(model, W, pairs, GradientFlow(dense), backend=be, **solve_options).losses
    rows = []
    for i, m in enumerate(sizes):
        U, coef, L_TE = teachers[m]
        curves = {"sampled": (achieved, measured[i].losses, measured[i].se, m_st),
                  "finite": (dense, finite[i], np.zeros_like(dense), m_st)}
        if hasattr(model, "infinite_width"):
            curves["infinite"] = (dense, model.infinite_width(U, coef, GradientFlow(dense)).losses,
                                  np.zeros_like(dense), np.inf)
        for method, (t_values, L, se, width) in curves.items():
            rows += [{"method": method, "m_st": float(width), "m_te": m, "replicate": replicate,
                      "t": t, "L_ST": l, "se": s, "L_TE": L_TE} for t, l, s in zip(t_values, L, se)]
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def disagreements(losses: pd.DataFrame, sampled_curves: pd.DataFrame) -> pd.DataFrame:
    """Largest disagreement of each pair, per teacher size.

    ``finite_vs_infinite`` at the experiment's width (a finite-width effect, not an error);
    ``sampled_vs_finite`` and ``sampled_vs_infinite`` on the sampled student, in relative
    error and in Monte Carlo standard errors (``max_abs_z``).
    """
    rows = []
    for m_te, part in losses.groupby("m_te", sort=True):
        if part["L_ST_inf"].notna().any():
            rel = np.abs(part["L_ST"] / part["L_ST_inf"] - 1.0)
            rows.append({"comparison": "finite_vs_infinite", "m_te": m_te, "m_st": float(part["m_st"].iloc[0]),
                         "max_rel_diff": float(rel.max()), "max_abs_z": np.nan, "n_points": len(part)})
    for m_te, part in sampled_curves.groupby("m_te", sort=True):
        s = part[part["method"] == "sampled"]
        for reference in ("finite", "infinite"):
            ref = part[part["method"] == reference][["t", "L_ST"]]
            if ref.empty:
                continue
            both = s.merge(ref, on="t", suffixes=("", "_ref"), validate="one_to_one")
            if len(both) != len(s):
                raise ValueError(f"the {reference} curve lacks some sampled times (M_TE = {m_te})")
            diff = both["L_ST"] - both["L_ST_ref"]
            rows.append({"comparison": f"sampled_vs_{reference}", "m_te": m_te, "m_st": float(s["m_st"].iloc[0]),
                         "max_rel_diff": float(np.max(np.abs(diff / both["L_ST_ref"]))),
                         "max_abs_z": float(np.max(np.abs(diff) / both["se"])), "n_points": len(both)})
    return pd.DataFrame(rows, columns=DISAGREEMENT_COLUMNS)

