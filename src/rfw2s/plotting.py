"""Figures 2(a) and 2(b) of the paper from the aggregated tables (SPEC section 6)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from .artifacts import atomic_path

TIME_LABEL = r"gradient-flow time $t$  (units of SPEC §2: $f=M^{-1/2}\sum_j\theta_j\phi_j$, loss $\frac{1}{2}E[(f-y)^2]$)"
REFERENCE_SLOPES = (1.0, 1.49, 2.0)
SPREADS = ("range", "std")


def _band(values: pd.DataFrame, spread: str):
    mean = values.mean(axis=1)
    if spread == "range":
        return mean, values.min(axis=1), values.max(axis=1)
    std = values.std(axis=1, ddof=1).fillna(0.0)
    return mean, mean - std, mean + std


def save_figure(fig, stem: Path, dpi: int, formats=("png", "pdf")) -> None:
    for fmt in formats:
        with atomic_path(Path(f"{stem}.{fmt}")) as tmp:
            fig.savefig(tmp, format=fmt, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def figure_2a(losses: pd.DataFrame, *, title: str, spread: str = "range"):
    """``L_ST(t) / L_TE`` against ``t``: mean over replicates and its spread, per ``M_TE``."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    sizes = sorted(losses["m_te"].unique())
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(sizes)))
    for color, m_te in zip(colors, sizes):
        wide = losses[losses["m_te"] == m_te].pivot(index="t", columns="replicate", values="ratio")
        mean, lo, hi = _band(wide, spread)
        ax.plot(wide.index, mean, color=color, lw=1.8, label=rf"$M_{{TE}}={m_te}$")
        ax.fill_between(wide.index, lo, hi, color=color, alpha=0.25, lw=0)
    ax.axhline(1.0, color="k", ls=":", lw=1, label="ratio = 1")
    ax.set_xscale("log")
    ax.set_xlabel(TIME_LABEL, fontsize=8)
    ax.set_ylabel(r"$L_{ST}(t)\,/\,L_{TE}$")
    ymax = float(np.nanpercentile(losses["ratio"], 98))
    ax.set_ylim(0.0, max(1.5, min(ymax, 4.0)))
    n_rep = losses["replicate"].nunique()
    band = "min-max" if spread == "range" else "±1 std"
    ax.set_title(f"{title}: student/teacher loss ({n_rep} replicates, band = {band})", fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def figure_2b(summary: pd.DataFrame, fit: pd.DataFrame, *, title: str):
    """``min_t L_ST`` against ``L_TE`` (log-log), the fitted exponent and reference slopes."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    ax.scatter(summary["L_TE"], summary["L_ST_min"], s=14, color="tab:blue", alpha=0.5,
               label="replicates")
    means = summary.groupby("m_te")[["L_TE", "L_ST_min"]].mean()
    ax.plot(means["L_TE"], means["L_ST_min"], "o", color="tab:blue", ms=7, mfc="none",
            label=r"mean per $M_{TE}$")
    overall = fit[fit["scope"] == "all"].iloc[0]
    x = np.geomspace(summary["L_TE"].min(), summary["L_TE"].max(), 50)
    se = overall["exponent_se"]
    se_text = f" ± {se:.2f}" if np.isfinite(se) else ""
    ax.plot(x, np.exp(overall["intercept"]) * x ** overall["exponent"], color="tab:red", lw=2,
            label=f"fit: exponent {overall['exponent']:.2f}{se_text}")
    # Reference slopes pass through the largest-L_TE mean point.
    x0, y0 = means["L_TE"].iloc[0], means["L_ST_min"].iloc[0]
    for slope, ls in zip(REFERENCE_SLOPES, ("--", "-.", ":")):
        ax.plot(x, y0 * (x / x0) ** slope, color="gray", ls=ls, lw=1, label=f"slope {slope:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # minor labels collide over a short log range
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel(r"teacher loss $L_{TE}$")
    ax.set_ylabel(r"best student loss $\min_t L_{ST}(t)$")
    ax.set_title(f"{title}: polynomial improvement (numpy.polyfit on log-log)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig
