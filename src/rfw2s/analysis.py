"""Tables from loss curves: the best early-stopped student per teacher, and the
log-log exponent of ``min_t L_ST`` against ``L_TE`` (SPEC section 6)."""
from __future__ import annotations

import numpy as np
import pandas as pd

LOSS_COLUMNS = ["replicate", "m_te", "m_st", "d", "t", "L_TE", "L_ST", "ratio"]
SUMMARY_COLUMNS = ["replicate", "m_te", "m_st", "L_TE", "L_ST_min", "t_best", "ratio_best"]
FIT_COLUMNS = ["scope", "replicate", "exponent", "exponent_se", "intercept", "n_points"]


def sort_losses(losses: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in LOSS_COLUMNS if c not in losses.columns]
    if missing:
        raise ValueError(f"loss table lacks columns {missing}")
    return losses.sort_values(["replicate", "m_te", "t"], kind="stable").reset_index(drop=True)


def summarize(losses: pd.DataFrame) -> pd.DataFrame:
    """One row per (replicate, m_te): the best time on the grid and its loss."""
    best = losses.loc[losses.groupby(["replicate", "m_te"], sort=True)["L_ST"].idxmin()]
    out = best.rename(columns={"L_ST": "L_ST_min", "t": "t_best", "ratio": "ratio_best"})
    return out[SUMMARY_COLUMNS].sort_values(["replicate", "m_te"]).reset_index(drop=True)


def loglog_fit(L_TE, L_ST_min) -> tuple[float, float]:
    """Slope and intercept of ``log L_ST_min = a log L_TE + b`` (``numpy.polyfit``)."""
    x, y = np.log(np.asarray(L_TE, float)), np.log(np.asarray(L_ST_min, float))
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x, y, 1)
    return float(slope), float(intercept)


def fit_exponents(summary: pd.DataFrame) -> pd.DataFrame:
    """The exponent per replicate, and pooled over all replicates with its standard
    error over replicates (std of the per-replicate exponents / sqrt(count))."""
    rows = []
    for rep, part in summary.groupby("replicate", sort=True):
        a, b = loglog_fit(part["L_TE"], part["L_ST_min"])
        rows.append({"scope": "replicate", "replicate": int(rep), "exponent": a,
                     "exponent_se": float("nan"), "intercept": b, "n_points": len(part)})
    per_rep = np.array([r["exponent"] for r in rows if np.isfinite(r["exponent"])])
    se = float(per_rep.std(ddof=1) / np.sqrt(len(per_rep))) if len(per_rep) > 1 else float("nan")
    a, b = loglog_fit(summary["L_TE"], summary["L_ST_min"])
    rows.insert(0, {"scope": "all", "replicate": -1, "exponent": a, "exponent_se": se,
                    "intercept": b, "n_points": len(summary)})
    return pd.DataFrame(rows, columns=FIT_COLUMNS)
