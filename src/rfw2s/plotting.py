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


def where(df: pd.DataFrame, **values) -> pd.DataFrame:
    """The rows of ``df`` with these column values (columns it lacks are ignored)."""
    for column, value in values.items():
        if column in df.columns:
            df = df[df[column] == value]
    return df


RULE_AXES = {"gradient_flow": TIME_LABEL,
             "gradient_descent": r"gradient-descent time $t = \eta k$ ($k$ steps of size $\eta$; units as for gradient flow)",
             "ridge": r"ridge penalty $\mu$ on $\frac{1}{2}E[(f-y)^2] + \frac{\mu}{2}|\theta|^2$ (large $\mu$: less fitted)"}


def _x_axis(losses: pd.DataFrame):
    """The x values of each grid value (training time; the penalty for ridge) and their label."""
    rule = losses["rule"].iloc[0]
    x = losses.groupby("grid")["t" if rule != "ridge" else "grid"].mean()
    return x, RULE_AXES[rule]


def figure_2a(losses: pd.DataFrame, *, title: str, spread: str = "range"):
    """``L_ST / L_TE`` against training time (log axis): mean over replicates and its spread,
    per ``M_TE`` (one learning rule)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    sizes = sorted(losses["m_te"].unique())
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(sizes)))
    x, xlabel = _x_axis(losses)
    for color, m_te in zip(colors, sizes):
        wide = losses[losses["m_te"] == m_te].pivot(index="grid", columns="replicate", values="ratio")
        mean, lo, hi = _band(wide, spread)
        m_st = losses.loc[losses["m_te"] == m_te, "m_st"].iloc[0]
        label = rf"$M_{{TE}}={m_te}$" + (rf", $M_{{ST}}={m_st}$" if losses["m_st"].nunique() > 1 else "")
        ax.plot(x[wide.index], mean, color=color, lw=1.8, label=label)
        ax.fill_between(x[wide.index], lo, hi, color=color, alpha=0.25, lw=0)
        infinite = losses[losses["m_te"] == m_te].groupby("grid")["ratio_inf"].mean()
        if infinite.notna().any():
            ax.plot(x[infinite.index], infinite, color=color, lw=1.2, ls="--")
    if losses["ratio_inf"].notna().any():
        ax.plot([], [], color="gray", ls="--", lw=1.2, label=r"$M_{ST}\to\infty$ (exact)")
    ax.axhline(1.0, color="k", ls=":", lw=1, label="ratio = 1")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(r"$L_{ST}\,/\,L_{TE}$")
    ymax = float(np.nanpercentile(losses["ratio"], 98))
    ax.set_ylim(0.0, max(1.5, min(ymax, 4.0)))
    n_rep = losses["replicate"].nunique()
    band = "min-max" if spread == "range" else "±1 std"
    widths = losses.groupby("m_te")["m_st"].first()
    m_st = str(widths.iloc[0]) if widths.nunique() == 1 else "varies with $M_{TE}$"
    n = losses["n"].iloc[0]
    trained = "" if n == np.inf else f", trained on n = {n:g} inputs"
    ax.set_title(f"{title}: student/teacher loss, {losses['rule'].iloc[0]}, $M_{{ST}}$ = {m_st}{trained} "
                 f"({n_rep} replicates, band = {band})", fontsize=8)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def figure_2b(summary: pd.DataFrame, fit: pd.DataFrame, *, title: str):
    """``min L_ST`` against ``L_TE`` (log-log), the fitted exponents and reference slopes: the
    finite and the infinite width, or for several learning rules one series per rule."""
    fig, ax = plt.subplots(figsize=(5.8, 4.8))
    x = np.geomspace(summary["L_TE"].min(), summary["L_TE"].max(), 50)
    rules = list(dict.fromkeys(summary["rule"]))
    if len(rules) == 1:
        series = [("finite", "L_ST_min", {}, "tab:blue", "o", "finite width"),
                  ("infinite", "L_ST_inf_min", {}, "tab:orange", "s", r"$M_{ST}\to\infty$")]
    else:
        colors = plt.cm.tab10(np.arange(len(rules)))
        series = [("finite", "L_ST_min", {"rule": r}, c, "o", r.replace("_", " ")) for r, c in zip(rules, colors)]
    for width, column, at, color, marker, label in series:
        part = where(summary, **at)
        if part[column].isna().all():
            continue
        ax.scatter(part["L_TE"], part[column], s=12, color=color, alpha=0.45, marker=marker)
        means = part.groupby("m_te")[["L_TE", column]].mean()
        ax.plot(means["L_TE"], means[column], marker, color=color, ms=7, mfc="none")
        overall = overall_fit(fit, width, **at)
        se = overall["exponent_se"]
        se_text = f" ± {se:.2g}" if np.isfinite(se) else ""
        ax.plot(x, np.exp(overall["intercept"]) * x ** overall["exponent"], color=color, lw=2,
                label=f"{label}: exponent {overall['exponent']:.2f}{se_text}")
    # Reference slopes pass through the largest-L_TE mean point of the finite width.
    means = where(summary, rule=rules[0]).groupby("m_te")[["L_TE", "L_ST_min"]].mean()
    x0, y0 = means["L_TE"].iloc[0], means["L_ST_min"].iloc[0]
    for slope, ls in zip(REFERENCE_SLOPES, ("--", "-.", ":")):
        ax.plot(x, y0 * (x / x0) ** slope, color="gray", ls=ls, lw=1, label=f"slope {slope:g}")
    _log_axes(ax)
    ax.set_xlabel(r"teacher loss $L_{TE}$")
    ax.set_ylabel(r"best student loss $\min L_{ST}$ over the grid")
    ax.set_title(f"{title}: polynomial improvement (numpy.polyfit on log-log; dots = replicates, "
                 "open = means)", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def _log_axes(ax):
    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis, limits in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        axis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels collide over a short range
        if limits[1] < 10 * limits[0]:  # within a decade, no power of ten to label: 1, 2 and 5 times them
            axis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(matplotlib.ticker.LogFormatterSciNotation(labelOnlyBase=False))


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


SWEEP_LABELS = {"m_st": r"student width $M_{ST}$", "n": r"student's sample size $n$"}


def sweep_label(axis: str, value) -> str:
    if axis == "n" and value == np.inf:
        return "population"
    return f"{value:g}" if isinstance(value, float) else str(value)


def figure_ablation_heatmap(summary: pd.DataFrame, axis: str = "m_st", *, title: str):
    """Best ratio ``min L_ST / L_TE`` (mean over replicates) over ``M_TE`` by the swept axis
    (student width, or sample size with the population last)."""
    grid = summary.groupby(["m_te", axis])["ratio_best"].mean().unstack(axis)
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.5, 0.6 * grid.shape[0] + 1.8))
    image = ax.imshow(grid.to_numpy(), cmap="viridis_r", aspect="auto", origin="lower")
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if value > np.nanmean(grid.to_numpy()) else "black")
    ax.set_xticks(range(grid.shape[1]), [sweep_label(axis, m) for m in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(m) for m in grid.index])
    ax.set_xlabel(SWEEP_LABELS[axis])
    ax.set_ylabel(r"teacher width $M_{TE}$")
    fig.colorbar(image, ax=ax, label=r"best ratio $\min L_{ST}/L_{TE}$")
    n_rep = summary["replicate"].nunique()
    ax.set_title(f"{title}: best student/teacher ratio (mean over {n_rep} replicates)", fontsize=9)
    return fig


def figure_ablation_exponent(fit: pd.DataFrame, axis: str = "m_st", *, title: str):
    """The fitted exponent against the swept axis (± standard error over replicates), with its
    limit: the exact infinite width for student widths, the population for sample sizes."""
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    rows = fit[(fit["width"] == "finite") & (fit["scope"] == "all")].sort_values(axis)
    finite = rows[np.isfinite(rows[axis].astype(float))]
    ax.errorbar(finite[axis].astype(float), finite["exponent"], yerr=finite["exponent_se"].fillna(0.0), fmt="o-",
                capsize=3, label="finite width" if axis == "m_st" else "trained on n inputs")
    if axis == "m_st":
        limit = fit[(fit["width"] == "infinite") & (fit["scope"] == "all")]["exponent"]
        name = r"$M_{ST}\to\infty$ (exact)"
    else:
        limit = rows[~np.isfinite(rows[axis].astype(float))]["exponent"]
        name = r"population ($n\to\infty$)"
    if limit.notna().any():
        ax.axhline(float(limit.iloc[0]), color="tab:orange", ls="--", label=f"{name}: {float(limit.iloc[0]):.2f}")
    for slope, ls in zip(REFERENCE_SLOPES, ("--", "-.", ":")):
        ax.axhline(slope, color="gray", ls=ls, lw=0.8)
        ax.text(float(finite[axis].min()), slope, f" {slope:g}", va="bottom", fontsize=7, color="gray")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(SWEEP_LABELS[axis])
    ax.set_ylabel(r"fitted exponent of $\min L_{ST}$ on $L_{TE}$")
    ax.set_title(f"{title}: exponent against {SWEEP_LABELS[axis]}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def figure_degrees(degrees: pd.DataFrame, losses: pd.DataFrame, *, title: str):
    """Per teacher width: the exact infinite-width student's loss in each degree against time
    (solid), the teacher's error in it (dotted level), and the student's whole loss at finite
    (black) and infinite width (grey dashed), means over replicates."""
    sizes = sorted(degrees["m_te"].unique())
    parts = list(dict.fromkeys(degrees["degree"]))
    colors = dict(zip(parts, plt.cm.tab10(np.arange(len(parts)) % 10)))
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes) + 1.0, 3.8), sharey=True, squeeze=False,
                             layout="constrained")
    for ax, m_te in zip(axes[0], sizes):
        part = degrees[(degrees["m_te"] == m_te) & (degrees["rule"] == degrees["rule"].iloc[0])]
        for name in parts:
            rows = part[part["degree"] == name].groupby("t")[["L_ST_inf", "L_TE"]].mean()
            label = f"degree {name}" if name.isdigit() else name
            ax.plot(rows.index, rows["L_ST_inf"], color=colors[name], lw=1.5, label=label)
            ax.axhline(rows["L_TE"].iloc[0], color=colors[name], ls=":", lw=1)
        whole = where(losses, m_te=m_te, rule=degrees["rule"].iloc[0]).groupby("t")[["L_ST", "L_ST_inf"]].mean()
        ax.plot(whole.index, whole["L_ST"], color="k", lw=1.2, label="whole loss, finite width")
        ax.plot(whole.index, whole["L_ST_inf"], color="gray", lw=1.2, ls="--", label=r"whole loss, $M_{ST}\to\infty$")
        _log_axes(ax)
        ax.set_title(rf"$M_{{TE}}={m_te}$", fontsize=9)
        ax.grid(True, which="both", alpha=0.2)
    fig.supxlabel(TIME_LABEL, fontsize=8)
    axes[0][0].set_ylabel("student loss in each part of the target\n(dotted: the teacher's error in it)")
    axes[0][-1].legend(fontsize=6, loc="lower left")
    fig.suptitle(f"{title}: what the student recovers, degree by degree (means over replicates)", fontsize=10)
    return fig


ORACLE = "best grid value on the evaluation rows (oracle early stopping)"


def figure_pgr(summary: pd.DataFrame, *, title: str):
    """Performance gap recovered against ``M_TE``: the loss PGR and, where the target has classes,
    the accuracy PGR; replicates as dots, means as lines (per learning rule)."""
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    series = [("pgr", "loss", "o", "-")] + ([("pgr_accuracy", "accuracy", "s", "--")]
                                          if summary["pgr_accuracy"].notna().any() else [])
    rules = list(dict.fromkeys(summary["rule"]))
    colors = plt.cm.tab10(np.arange(len(rules)))
    for rule, color in zip(rules, colors):
        part = summary[summary["rule"] == rule]
        for column, what, marker, ls in series:
            if part[column].isna().all():
                continue
            ax.scatter(part["m_te"], part[column], s=12, color=color, alpha=0.4, marker=marker)
            means = part.groupby("m_te")[column].mean()
            label = f"PGR ({what})" + ("" if len(rules) == 1 else f", {rule.replace('_', ' ')}")
            ax.plot(means.index, means.values, ls=ls, marker=marker, color=color, mfc="none", label=label)
    ax.axhline(0.0, color="k", ls=":", lw=1)
    ax.axhline(1.0, color="gray", ls=":", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel(r"teacher width $M_{TE}$")
    ax.set_ylabel("performance gap recovered")
    ax.set_title(f"{title}: PGR = (teacher - student) / (teacher - ceiling), student and ceiling at the\n"
                 f"{ORACLE}; 0: as the teacher, 1: as trained on the truth", fontsize=8)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def figure_accuracy(losses: pd.DataFrame, *, title: str, spread: str = "range"):
    """Accuracy against training time per ``M_TE`` (mean over replicates and its spread), the
    teacher's as a dotted level, the strong ceiling's in black (one learning rule)."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6))
    sizes = sorted(losses["m_te"].unique())
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(sizes)))
    x, xlabel = _x_axis(losses)
    for color, m_te in zip(colors, sizes):
        part = losses[losses["m_te"] == m_te]
        mean, lo, hi = _band(part.pivot(index="grid", columns="replicate", values="accuracy_ST"), spread)
        ax.plot(x[mean.index], mean, color=color, lw=1.8, label=rf"$M_{{TE}}={m_te}$")
        ax.fill_between(x[mean.index], lo, hi, color=color, alpha=0.25, lw=0)
        ax.axhline(part["accuracy_TE"].mean(), color=color, ls=":", lw=1.2)
    ceiling = losses[losses["m_te"] == sizes[0]].groupby("grid")["accuracy_ceiling"].mean()
    ax.plot(x[ceiling.index], ceiling, color="k", lw=1.4, label="strong ceiling (trained on the truth)")
    ax.plot([], [], color="gray", ls=":", lw=1.2, label="teacher")
    ax.set_xscale("log")
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel("accuracy")
    m_st = losses["m_st"].iloc[0]
    ax.set_title(f"{title}: accuracy of the student, {losses['rule'].iloc[0]}, $M_{{ST}}$ = {m_st} "
                 f"({losses['replicate'].nunique()} replicates)", fontsize=8)
    ax.legend(fontsize=8, ncol=2)
    ax.grid(True, which="both", alpha=0.2)
    return fig


def figure_2_files(losses: pd.DataFrame, summary: pd.DataFrame, fit: pd.DataFrame, shown: dict, title: str,
                   out_dir: Path, dpi: int, spread: str) -> None:
    """Figures 2(a) and 2(b) and the PGR of an experiment into ``out_dir``: at the ``shown`` values of
    the axes it sweeps (a student width, a sample size); over several rules, 2(a) of
    ``shown["rule"]``, 2(b) and the PGR of every rule."""
    at = {k: v for k, v in shown.items() if k != "rule"}
    losses, summary, fit = (where(df, **at) for df in (losses, summary, fit))
    title = ", ".join([title] + [f"{k} = {sweep_label(k, v)}" for k, v in at.items()])
    save_figure(figure_2a(where(losses, **shown), title=title, spread=spread), out_dir / "fig2a", dpi)
    save_figure(figure_2b(summary, fit, title=title), out_dir / "fig2b", dpi)
    save_figure(figure_pgr(summary, title=title), out_dir / "pgr", dpi)


def accuracy_file(losses: pd.DataFrame, shown: dict, title: str, stem: Path, dpi: int, spread: str) -> None:
    """The accuracy figure of an experiment whose target has classes, at its ``shown`` values."""
    at = {k: v for k, v in shown.items() if k != "rule"}
    title = ", ".join([title] + [f"{k} = {sweep_label(k, v)}" for k, v in at.items()])
    save_figure(figure_accuracy(where(losses, **shown), title=title, spread=spread), stem, dpi)


def ablation_files(summary: pd.DataFrame, fit: pd.DataFrame, sweep: str, shown: dict, title: str, out_dir: Path,
                   dpi: int) -> None:
    """The best-ratio heatmap and the exponent against the swept axis ``sweep``, the other swept
    axes fixed at their ``shown`` values."""
    others = {k: v for k, v in shown.items() if k != sweep}
    summary, fit = where(summary, **others), where(fit, **others)
    save_figure(figure_ablation_heatmap(summary, sweep, title=title), out_dir / "ablation_heatmap", dpi)
    save_figure(figure_ablation_exponent(fit, sweep, title=title), out_dir / "ablation_exponent", dpi)
