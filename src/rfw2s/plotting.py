"""Figures from the aggregated tables: the paper's Figures 2(a) and 2(b), the student-width
ablation, and the validation figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
import pandas as pd

from .analysis import overall_fit
from .artifacts import atomic_path

# The time unit in words: the student f = M^{-1/2} sum_j theta_j phi_j follows
# d theta / dt = -grad of 1/2 E[(f - y)^2] from theta = 0.
TIME_LABEL = (r"gradient-flow time $t$ (student $f=M^{-1/2}\sum_j\theta_j\phi_j$, "
              r"$d\theta/dt=-\nabla\,\frac{1}{2}E[(f-y)^2]$ from $\theta=0$)")
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
        m_st = losses.loc[losses["m_te"] == m_te, "m_st"].iloc[0]
        label = rf"$M_{{TE}}={m_te}$" + (rf", $M_{{ST}}={m_st}$" if losses["m_st"].nunique() > 1 else "")
        ax.plot(wide.index, mean, color=color, lw=1.8, label=label)
        ax.fill_between(wide.index, lo, hi, color=color, alpha=0.25, lw=0)
        infinite = losses[losses["m_te"] == m_te].groupby("t")["ratio_inf"].mean()
        if infinite.notna().any():
            ax.plot(infinite.index, infinite, color=color, lw=1.2, ls="--")
    if losses["ratio_inf"].notna().any():
        ax.plot([], [], color="gray", ls="--", lw=1.2, label=r"$M_{ST}\to\infty$ (exact)")
    ax.axhline(1.0, color="k", ls=":", lw=1, label="ratio = 1")
    ax.set_xscale("log")
    ax.set_xlabel(TIME_LABEL, fontsize=8)
    ax.set_ylabel(r"$L_{ST}(t)\,/\,L_{TE}$")
    ymax = float(np.nanpercentile(losses["ratio"], 98))
    ax.set_ylim(0.0, max(1.5, min(ymax, 4.0)))
    n_rep = losses["replicate"].nunique()
    band = "min-max" if spread == "range" else "±1 std"
    widths = losses.groupby("m_te")["m_st"].first()
    m_st = str(widths.iloc[0]) if widths.nunique() == 1 else "varies with $M_{TE}$"
    ax.set_title(f"{title}: student/teacher loss, $M_{{ST}}$ = {m_st} ({n_rep} replicates, band = {band})",
                 fontsize=9)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def figure_2b(summary: pd.DataFrame, fit: pd.DataFrame, *, title: str):
    """``min_t L_ST`` against ``L_TE`` (log-log), the fitted exponents and reference slopes."""
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    x = np.geomspace(summary["L_TE"].min(), summary["L_TE"].max(), 50)
    series = [("finite", "L_ST_min", "tab:blue", "o", "finite width"),
              ("infinite", "L_ST_inf_min", "tab:orange", "s", r"$M_{ST}\to\infty$")]
    for width, column, color, marker, label in series:
        if summary[column].isna().all():
            continue
        ax.scatter(summary["L_TE"], summary[column], s=12, color=color, alpha=0.45, marker=marker)
        means = summary.groupby("m_te")[["L_TE", column]].mean()
        ax.plot(means["L_TE"], means[column], marker, color=color, ms=7, mfc="none")
        overall = overall_fit(fit, width)
        se = overall["exponent_se"]
        se_text = f" ± {se:.2f}" if np.isfinite(se) else ""
        ax.plot(x, np.exp(overall["intercept"]) * x ** overall["exponent"], color=color, lw=2,
                label=f"{label}: exponent {overall['exponent']:.2f}{se_text}")
    # Reference slopes pass through the largest-L_TE mean point of the finite width.
    means = summary.groupby("m_te")[["L_TE", "L_ST_min"]].mean()
    x0, y0 = means["L_TE"].iloc[0], means["L_ST_min"].iloc[0]
    for slope, ls in zip(REFERENCE_SLOPES, ("--", "-.", ":")):
        ax.plot(x, y0 * (x / x0) ** slope, color="gray", ls=ls, lw=1, label=f"slope {slope:g}")
    _log_axes(ax)
    ax.set_xlabel(r"teacher loss $L_{TE}$")
    ax.set_ylabel(r"best student loss $\min_t L_{ST}(t)$")
    ax.set_title(f"{title}: polynomial improvement (numpy.polyfit on log-log; dots = replicates, "
                 "open = means)", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def _log_axes(ax):
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # minor labels collide over a short log range
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def figure_validation(curves: pd.DataFrame, convergence: pd.DataFrame, table: pd.DataFrame, *, title: str):
    """Left: sampled-data training (points, 2 standard errors) on the exact finite-width
    (solid) and infinite-width (dashed) curves. Right: best ratio against student width."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.0, 4.8))
    sizes = sorted(curves["m_te"].unique())
    colors = dict(zip(sizes, plt.cm.viridis(np.linspace(0.0, 0.9, len(sizes)))))
    for m_te in sizes:
        part = curves[curves["m_te"] == m_te]
        for method, style in (("finite", "-"), ("infinite", "--")):
            c = part[part["method"] == method].sort_values("t")
            if not c.empty:
                left.plot(c["t"], c["L_ST"] / c["L_TE"], ls=style, color=colors[m_te], lw=1.4)
        s = part[part["method"] == "sampled"].sort_values("t")
        z = table[(table["comparison"] == "sampled_vs_finite") & (table["m_te"] == m_te)]["max_abs_z"]
        left.errorbar(s["t"], s["L_ST"] / s["L_TE"], yerr=2 * s["se"] / s["L_TE"], fmt="o", ms=4,
                      color=colors[m_te], capsize=2,
                      label=rf"$M_{{TE}}={m_te}$: max |z| = {float(z.iloc[0]):.1f}" if len(z) else None)
    m_st = int(curves.loc[curves["method"] == "sampled", "m_st"].iloc[0])
    left.plot([], [], "k-", label=f"exact, $M_{{ST}}={m_st}$")
    left.plot([], [], "k--", label=r"exact, $M_{ST}\to\infty$")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(TIME_LABEL, fontsize=7)
    left.set_ylabel(r"$L_{ST}(t)/L_{TE}$")
    left.set_title("sampled-data gradient descent (points, ±2 s.e.) on the exact curves", fontsize=9)
    left.legend(fontsize=7)
    left.grid(True, which="both", alpha=0.2)

    finite = convergence[np.isfinite(convergence["m_st"])]
    for m_te in sorted(convergence["m_te"].unique()):
        color = colors.get(m_te, "k")
        mean = finite[finite["m_te"] == m_te].groupby("m_st")["ratio_best"].agg(["mean", "min", "max"])
        right.errorbar(mean.index, mean["mean"], yerr=[mean["mean"] - mean["min"], mean["max"] - mean["mean"]],
                       fmt="o-", color=color, capsize=3, label=rf"$M_{{TE}}={m_te}$")
        inf = convergence[(convergence["m_te"] == m_te) & ~np.isfinite(convergence["m_st"])]["ratio_best"]
        if len(inf):
            right.axhline(inf.mean(), color=color, ls="--", lw=1)
    right.set_xscale("log", base=2)
    right.set_xlabel(r"student width $M_{ST}$ (dashed: $M_{ST}\to\infty$, exact)")
    right.set_ylabel(r"best ratio $\min_t L_{ST}/L_{TE}$ (mean, min-max over replicates)")
    right.set_title("finite width approaches infinite width", fontsize=9)
    right.legend(fontsize=7)
    right.grid(True, which="both", alpha=0.2)
    fig.suptitle(f"{title}: three independent computations", fontsize=10)
    return fig


def figure_ablation_heatmap(summary: pd.DataFrame, *, title: str):
    """Best ratio ``min_t L_ST / L_TE`` (mean over replicates) over ``M_TE`` by ``M_ST``."""
    grid = summary.groupby(["m_te", "m_st"])["ratio_best"].mean().unstack("m_st")
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.5, 0.6 * grid.shape[0] + 1.8))
    image = ax.imshow(grid.to_numpy(), cmap="viridis_r", aspect="auto", origin="lower")
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value > np.nanmean(grid.to_numpy()) else "black")
    ax.set_xticks(range(grid.shape[1]), [str(m) for m in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(m) for m in grid.index])
    ax.set_xlabel(r"student width $M_{ST}$")
    ax.set_ylabel(r"teacher width $M_{TE}$")
    fig.colorbar(image, ax=ax, label=r"best ratio $\min_t L_{ST}/L_{TE}$")
    n_rep = summary["replicate"].nunique()
    ax.set_title(f"{title}: best student/teacher ratio (mean over {n_rep} replicates)", fontsize=9)
    return fig


def figure_ablation_exponent(fit: pd.DataFrame, *, title: str):
    """The fitted exponent against ``M_ST`` (± standard error over replicates), with the
    exact infinite-width exponent as its limit."""
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    rows = fit[(fit["width"] == "finite") & (fit["scope"] == "all")].sort_values("m_st")
    ax.errorbar(rows["m_st"], rows["exponent"], yerr=rows["exponent_se"].fillna(0.0), fmt="o-", capsize=3,
                label="finite width")
    infinite = fit[(fit["width"] == "infinite") & (fit["scope"] == "all")]["exponent"]
    if infinite.notna().any():
        ax.axhline(float(infinite.iloc[0]), color="tab:orange", ls="--",
                   label=rf"$M_{{ST}}\to\infty$ (exact): {float(infinite.iloc[0]):.2f}")
    for slope, ls in zip(REFERENCE_SLOPES, ("--", "-.", ":")):
        ax.axhline(slope, color="gray", ls=ls, lw=0.8)
        ax.text(rows["m_st"].min(), slope, f" {slope:g}", va="bottom", fontsize=7, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"student width $M_{ST}$")
    ax.set_ylabel(r"fitted exponent of $\min_t L_{ST}$ on $L_{TE}$")
    ax.set_title(f"{title}: exponent against student width", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig
