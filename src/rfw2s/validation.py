"""Three independent computations of the student's loss, and how far apart they are.

1. exact finite width (one eigendecomposition of the population kernel, :mod:`rfw2s.solve`);
2. exact infinite width (the model's spectral solution, :mod:`rfw2s.spectral`);
3. real training on samples (:mod:`rfw2s.sample`), with Monte Carlo standard errors.

(1) and (2) differ by a finite-width effect that must shrink as ``M_ST`` grows (the
convergence table); (3) must land on (1) for the same features within a few standard
errors.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from .backend import to_numpy
from .sample import train_students
from .seeding import seed_sequence
from .solve import losses_from_spectrum, student_spectrum

CURVE_COLUMNS = ["method", "m_st", "m_te", "replicate", "t", "L_ST", "se", "L_TE"]
CONVERGENCE_COLUMNS = ["m_st", "m_te", "replicate", "ratio_best", "t_best"]
DISAGREEMENT_COLUMNS = ["comparison", "m_te", "m_st", "max_rel_diff", "max_abs_z", "n_points"]


def exact_curves(model, W, teachers, ts, backend="numpy") -> np.ndarray:
    """Exact finite-width curves of all ``teachers`` (list of ``(U, coef)``) for student ``W``,
    from one eigendecomposition; shape ``(len(teachers), len(ts))``."""
    from .backend import resolve

    be = resolve(backend) if isinstance(backend, str) else backend
    Wx = be.asarray(W)
    lam, V = student_spectrum(model, Wx, backend=be)
    C = be.xp.stack([model.gram(Wx, be.asarray(U)) @ be.asarray(coef) for U, coef in teachers], axis=1)
    return to_numpy(losses_from_spectrum(lam, V, C, model.target_moments(Wx), model.target_norm2,
                                         be.asarray(np.asarray(ts, float))))


def convergence_table(model, teachers_by_replicate, widths, ts, seed, backend="numpy",
                      known: pd.DataFrame | None = None) -> pd.DataFrame:
    """Best ratio on the grid for each student width (``inf`` = infinite width).

    ``teachers_by_replicate[r]`` maps ``m_te -> (U, coef, L_TE)``; a width already in
    ``known`` (rows of the experiment's own losses table) is read, not recomputed.
    """
    rows = []
    for r, teachers in teachers_by_replicate.items():
        sizes = sorted(teachers)
        pairs = [(teachers[m][0], teachers[m][1]) for m in sizes]
        for width in widths:
            if known is not None and width in set(known["m_st"]):
                part = known[known["replicate"] == r]
                curves = np.stack([part[part["m_te"] == m].sort_values("t")["L_ST"].to_numpy() for m in sizes])
            else:
                W = model.sample_features(seed_sequence(seed, "student", width, r), width)
                curves = exact_curves(model, W, pairs, ts, backend)
            rows += _best_rows(width, sizes, r, curves, ts, teachers)
        if hasattr(model, "infinite_width"):
            curves = np.stack([model.infinite_width(U, coef, ts).losses for U, coef in pairs])
            rows += _best_rows(np.inf, sizes, r, curves, ts, teachers)
    return pd.DataFrame(rows, columns=CONVERGENCE_COLUMNS).sort_values(["m_te", "replicate", "m_st"],
                                                                        ignore_index=True)


def _best_rows(width, sizes, replicate, curves, ts, teachers):
    best = curves.argmin(axis=1)
    return [{"m_st": float(width), "m_te": m, "replicate": replicate,
             "ratio_best": float(curves[i, best[i]] / teachers[m][2]), "t_best": float(ts[best[i]])}
            for i, m in enumerate(sizes)]


def sampled_comparison(model, teachers, m_st, sampled: dict, seed, replicate=0, backend="numpy") -> pd.DataFrame:
    """Sampled-data training against both exact curves, for one student of width ``m_st``.

    ``teachers`` maps ``m_te -> (U, coef, L_TE)``; ``sampled`` holds ``runs, batch, t_max,
    points`` and optionally ``step_fraction``. Returns rows of :data:`CURVE_COLUMNS`.
    """
    sizes = sorted(teachers)
    pairs = [(teachers[m][0], teachers[m][1]) for m in sizes]
    W = model.sample_features(seed_sequence(seed, "student", m_st, replicate), m_st)
    ts = np.geomspace(sampled["t_max"] / 100.0, sampled["t_max"], int(sampled["points"]))
    options = {"runs": int(sampled["runs"]), "batch": int(sampled["batch"]), "seed": seed, "backend": backend}
    if "step_fraction" in sampled:
        from .sample import largest_stable_step

        options["eta"] = float(sampled["step_fraction"]) * largest_stable_step(model, W, backend)
    measured = train_students(model, W, pairs, ts, **options)
    achieved = measured[0].ts
    finite = exact_curves(model, W, pairs, achieved, backend)
    rows = []
    for i, m in enumerate(sizes):
        U, coef, L_TE = teachers[m]
        curves = {"sampled": (measured[i].losses, measured[i].se), "finite": (finite[i], np.zeros_like(achieved))}
        if hasattr(model, "infinite_width"):
            curves["infinite"] = (model.infinite_width(U, coef, achieved).losses, np.zeros_like(achieved))
        for method, (L, se) in curves.items():
            rows += [{"method": method, "m_st": float(m_st if method != "infinite" else np.inf), "m_te": m,
                      "replicate": replicate, "t": t, "L_ST": l, "se": s, "L_TE": L_TE}
                     for t, l, s in zip(achieved, L, se)]
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
        s = part[part["method"] == "sampled"].sort_values("t")
        for reference in ("finite", "infinite"):
            ref = part[part["method"] == reference].sort_values("t")
            if ref.empty:
                continue
            L_ref = ref["L_ST"].to_numpy()
            rows.append({"comparison": f"sampled_vs_{reference}", "m_te": m_te, "m_st": float(s["m_st"].iloc[0]),
                         "max_rel_diff": float(np.max(np.abs(s["L_ST"].to_numpy() / L_ref - 1.0))),
                         "max_abs_z": float(np.max(np.abs(s["L_ST"].to_numpy() - L_ref) / s["se"].to_numpy())),
                         "n_points": len(s)})
    return pd.DataFrame(rows, columns=DISAGREEMENT_COLUMNS)

