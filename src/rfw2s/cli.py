"""Pipeline steps as command-line entry points (``python -m rfw2s <step> ...``).

Each step reads its inputs, calls the library, and writes its artifacts atomically. A shared
step takes its *recipe* (:mod:`rfw2s.plan`: everything its numbers depend on, as JSON) and
records it in what it writes. Nothing here knows of Snakemake; a step runs by hand with the
same arguments (``python -m rfw2s <step> --help``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import artifacts, resources, seeding, solve
from . import backend as backends
from .curves import OPERATOR_FILES
from .finite_sample import draw_samples
from .models import build_spec
from .resources import DENSE_EIGH_MATRICES, memory_needed

log = logging.getLogger("rfw2s")


@contextmanager
def step(name: str, be: backends.Backend | None = None):
    start = time.perf_counter()
    yield
    if be is not None:
        be.synchronize()
    log.info("%s: %.3f s", name, time.perf_counter() - start)


def _imports_done() -> None:
    """Log the job's start-up so far (interpreter and imports, from ``python -m rfw2s``), which
    bench/stage_times.py weighs against the job's wall time."""
    started = getattr(sys.modules.get("__main__"), "STARTED", None)
    if started is not None:
        log.info("start-up (interpreter and imports): %.3f s", time.perf_counter() - started)


def _backend(name: str) -> backends.Backend:
    be = backends.resolve(name)
    log.info("backend: %s (requested %s) on %s", be.name, name, be.device)
    return be


def _metadata(be: backends.Backend | None = None, **fields) -> dict:
    meta = {"versions": backends.versions(), **fields}
    if be is not None:
        meta.update(backend=be.name, device=be.device)
    return meta


def _student(recipe: dict, replicate: int):
    model = build_spec(recipe["model"])
    return model, seeding.draw(model, recipe["seed"], "student", recipe["m_st"], replicate)


def operator_files_by_replicate(operator: str, files: list[str], replicates: list[int]) -> dict[int, dict[str, str]]:
    """``replicate -> {name: path}`` from the flat list :meth:`rfw2s.plan.Plan.operator_files` gives."""
    names = OPERATOR_FILES[operator]
    if len(files) != len(names) * len(replicates):
        raise SystemExit(f"operator {operator!r} reads {len(names)} cached file(s) per replicate "
                         f"({', '.join(names) or 'none'}) for {len(replicates)} replicate(s); got {len(files)}")
    return {r: dict(zip(names, files[i * len(names):(i + 1) * len(names)])) for i, r in enumerate(replicates)}


def _cached_operator(operator: str, files: dict[str, str]) -> dict:
    """The cached spectrum or kernel a solve through ``operator`` reads (checked on load)."""
    if operator == "eigh":
        return {"spectrum": (artifacts.load_npy(files["eigvals"]), artifacts.load_npy(files["eigvecs"]))}
    if operator == "cached":
        return {"kernel": artifacts.load_npy(files["gram"])}
    return {}


# --- steps -------------------------------------------------------------------------
def cmd_teachers(a):
    """Every teacher size of one replicate in one job: the job's start-up costs more than its fits."""
    _imports_done()
    recipe = json.loads(a.recipe)
    be = _backend(recipe["backend"])
    fits = {"replicate": np.int64(a.replicate), "m_te": np.asarray(recipe["m_te"], dtype=np.int64),
            "recipe": np.asarray(a.recipe)}
    samples = recipe.get("samples")
    for spec, m_te in zip(recipe["models"], recipe["m_te"]):
        model = build_spec(spec)
        U = seeding.draw(model, recipe["seed"], "teacher", m_te, a.replicate)
        X = None if samples is None else draw_samples(model, samples["seed"], samples["n"], a.replicate)
        with step(f"teacher fit M_TE={m_te}" + ("" if X is None else f" on {len(X)} inputs"), be):
            fit = solve.fit_teacher(model, U, samples=X, ridge=(samples or {}).get("ridge", 0.0), backend=be)
        log.info("M_TE=%d: L_TE = %.6e (rank %d of %d)", m_te, fit.loss, fit.rank, m_te)
        fits.update({f"features_{m_te}": U, f"coef_{m_te}": fit.coef, f"loss_{m_te}": np.float64(fit.loss),
                     f"rank_{m_te}": np.int64(fit.rank)})
    artifacts.save_npz(a.out, **fits)


def cmd_kernel(a):
    from .curves import gram_matrix, gram_tiles
    from .plan import kernel_job_layout

    _imports_done()
    recipe = json.loads(a.recipe)
    be = _backend(recipe["backend"])
    model, W = _student(recipe, a.replicate)
    M = W.shape[0]
    log.info("kernel: M_ST=%d, d=%d, %.2f GiB", M, W.shape[1], M * M * 8 / 2**30)
    resources.ensure_disk(a.out, 8 * M * M + 128, f"the {M} x {M} kernel matrix")
    whole = kernel_job_layout(W.shape[1]) == "whole"
    resources.ensure_memory(memory_needed(M, W.shape[1], "stored" if whole else "tiled", 0, 0), be.name,
                            "the kernel" if whole else "a kernel block")
    Wx = be.asarray(W)
    with step("kernel", be), artifacts.npy_rows(a.out, (M, M), {"recipe": recipe, "replicate": a.replicate}) as write:
        if whole:
            write(backends.to_numpy(gram_matrix(model, Wx)))
        else:
            for _, tile in gram_tiles(model, Wx):  # the matrix-free solver's tiles, here stored
                write(backends.to_numpy(tile))


def cmd_eigh(a):
    _imports_done()
    recipe = json.loads(a.recipe)
    be = _backend(recipe["backend"])
    G = artifacts.load_npy(a.gram)
    M = G.shape[0]
    log.info("eigh: %d x %d on %s", M, M, be.device)
    resources.ensure_disk(a.out_eigvecs, 8 * M * M + 8 * M + 256, f"the {M} x {M} eigenvectors")
    resources.ensure_memory(DENSE_EIGH_MATRICES * 8 * M * M, be.name, f"dense eigh of a {M} x {M} matrix")
    with step("load kernel", be):
        Gx = be.asarray(G)
    with step("eigh", be):
        lam, V = solve.spectrum_of_gram(Gx, be)
    del Gx
    with step("write eigendecomposition"):
        record = {"of": "H = G / M", "gram": a.gram, "recipe": recipe, "backend": be.name}
        artifacts.save_npy(a.out_eigvals, backends.to_numpy(lam), record)
        artifacts.save_npy(a.out_eigvecs, backends.to_numpy(V), record)
    lam = backends.to_numpy(lam)
    log.info("eigenvalues of H = G/M: max %.4e, min %.4e, %d at or below cut-off",
             lam.max(), lam.min(), int((lam <= solve.relative_cutoff(lam, lam.size)).sum()))


def load_teachers(paths, sizes) -> dict[int, list[dict]]:
    """Replicate -> the teachers of ``sizes`` (in that order), each ``{features, coef, loss}``,
    from teacher files (one per replicate, holding several sizes)."""
    found: dict[int, dict[int, dict]] = {}
    for path in paths:
        data = artifacts.load_npz(path)
        fits = found.setdefault(int(data["replicate"]), {})
        for m in data["m_te"].tolist():
            fits[m] = {"features": data[f"features_{m}"], "coef": data[f"coef_{m}"], "loss": data[f"loss_{m}"]}
    missing = {r: sorted(set(sizes) - set(fits)) for r, fits in found.items() if set(sizes) - set(fits)}
    if missing:
        raise SystemExit(f"teacher sizes {missing} (replicate: sizes) are in none of the teacher files {list(paths)}")
    return {r: [fits[m] for m in sizes] for r, fits in sorted(found.items())}


def _solve(recipe: dict, files: dict[str, str], model, W, teachers, rule, be, X=None):
    """The exact curves of the student ``W`` (trained on the inputs ``X``, or the population)
    for ``teachers`` as ``recipe`` says (operator, Lanczos settings), reading its cached
    ``files`` (if any), after checking the memory."""
    from .curves import exact_curves
    from .finite_sample import sample_curves

    operator = recipe["operator"]
    pairs = [(t["features"], t["coef"]) for t in teachers]
    steps = (recipe["lanczos"] or {}).get("max_steps", 0)
    # The eigenvectors are read, not computed, here: one M x M matrix, not eigh's peak.
    need = (8 * W.shape[0] ** 2 if operator == "eigh" else
            memory_needed(W.shape[0], W.shape[1], operator, len(teachers), steps, None if X is None else len(X)))
    resources.ensure_memory(need, be.name, f"{operator} curves at M_ST = {W.shape[0]}")
    if X is not None:
        return sample_curves(model, W, pairs, rule, X, operator=operator, backend=be, lanczos=recipe["lanczos"])
    return exact_curves(model, W, pairs, rule, operator=operator, backend=be, lanczos=recipe["lanczos"],
                        **_cached_operator(operator, files))


def _log_convergence(result, tol):
    if result.converged:
        log.info("solver %s: %d Lanczos steps, achieved tolerance %.2e", result.solver, result.steps,
                 result.achieved_tol)
    else:
        log.warning("solver %s: the step budget %d reached only %.2e, NOT the requested %.0e (recorded in "
                    "the achieved_tol column); raise lanczos.max_steps", result.solver, result.steps,
                    result.achieved_tol, tol)


def cmd_curves(a):
    """Every replicate's draw of one student width in one job: a GPU job's start-up (CuPy
    import, CUDA context) costs more than one draw's curves. No pandas here (its import would
    be a large part of a small job): the rows go to parquet as NumPy columns."""
    from . import analysis
    from .spectral import rules_of

    _imports_done()
    recipe = json.loads(a.recipe)
    be = _backend(recipe["backend"])
    rule = rules_of(recipe["rules"])
    samples = recipe.get("samples")
    replicates = recipe["replicates"]
    files = operator_files_by_replicate(recipe["operator"], a.operator_files, replicates)
    teachers = load_teachers(a.teachers, recipe["m_te"])
    absent = sorted(set(replicates) - set(teachers))
    if absent:
        raise SystemExit(f"replicates {absent} have no teacher file among {a.teachers}")
    frames, truncation = [], {}
    for replicate in replicates:
        model, W = _student(recipe, replicate)
        X = None if samples is None else draw_samples(model, samples["seed"], samples["n"], replicate)
        with step(f"{recipe['operator']} curves: replicate {replicate}, M_ST={W.shape[0]}, "
                  f"{len(teachers[replicate])} teachers, {rule.grid.size} grid values"
                  + ("" if X is None else f", trained on {len(X)} inputs"), be):
            result = _solve(recipe, files[replicate], model, W, teachers[replicate], rule, be, X)
        if recipe["lanczos"]:
            _log_convergence(result, recipe["lanczos"]["tol"])
        infinite = []
        for t in teachers[replicate]:
            # The infinite-width student trained on the population (not on the sample), by the
            # same filter: a step relative to lam_max as resolved for this draw.
            curve = (model.infinite_width(t["features"], t["coef"], result.rule)
                     if hasattr(model, "infinite_width") and X is None else None)
            infinite.append(curve)
            if curve is not None and curve.degree is not None:
                bound = float(np.max(curve.error_bound / curve.losses))
                truncation[f"{replicate}/{t['coef'].size}"] = {"degree": curve.degree, "relative_error_bound": bound}
                log.info("M_TE=%d infinite width: degree %d, truncation error <= %.1e relative", t["coef"].size,
                         curve.degree, bound)
        table = analysis.curve_columns(replicate, W, teachers[replicate], rule, result, infinite,
                                       floor=getattr(model, "loss_floor", float("nan")),
                                       n=np.inf if X is None else len(X))
        for m_te in dict.fromkeys(table["m_te"].tolist()):
            for name in dict.fromkeys(table["rule"].tolist()):
                rows = np.flatnonzero((table["m_te"] == m_te) & (table["rule"] == name))
                best = rows[np.argmin(table["L_ST"][rows])]
                log.info("replicate %d, M_TE=%d, %s: best ratio %.4f at grid value %.4g", replicate, m_te, name,
                         table["ratio"][best], table["grid"][best])
        frames.append(table)
    columns = {name: np.concatenate([f[name] for f in frames]) for name in frames[0]}
    artifacts.save_parquet(a.out, columns, _metadata(be, recipe=recipe, infinite_width_truncation=truncation))


def cmd_degrees(a):
    """The infinite-width student's loss and the teacher's error in each degree asked for."""
    import pandas as pd

    from . import analysis
    from .spectral import rules_of

    _imports_done()
    recipe = json.loads(a.recipe)
    rule = rules_of(recipe["rules"])
    teachers = load_teachers(a.teachers, recipe["m_te"])
    models = [build_spec(spec) for spec in recipe["models"]]
    frames = []
    for replicate in recipe["replicates"]:
        for model, teacher in zip(models, teachers[replicate]):
            curve = model.infinite_width(teacher["features"], teacher["coef"], rule)
            frames.append(analysis.degree_table(replicate, teacher, rule, curve, recipe["degrees"],
                                                remainder=getattr(model, "radial_remainder", 0.0)))
    artifacts.save_parquet(a.out, pd.concat(frames, ignore_index=True), _metadata(recipe=recipe))


def cmd_aggregate(a):
    import pandas as pd

    from . import analysis

    _imports_done()
    recipe = json.loads(a.recipe)
    losses = analysis.sort_losses(pd.concat([pd.read_parquet(p) for p in a.curves], ignore_index=True))
    summary = analysis.summarize(losses)
    fit = analysis.fit_exponents(summary, by=recipe["fit_by"])
    meta = _metadata(experiment=a.experiment, recipe=recipe, curves=list(a.curves))
    artifacts.save_parquet(a.out_losses, losses, meta)
    artifacts.save_parquet(a.out_summary, summary, meta)
    artifacts.save_parquet(a.out_fit, fit, meta)
    with artifacts.atomic_path(a.out_table) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    log.info("summary:\n%s\nfit:\n%s", summary.to_string(index=False), fit.to_string(index=False))


def cmd_figures(a):
    import pandas as pd

    from . import plotting

    _imports_done()
    losses, summary, fit = (pd.read_parquet(p) for p in (a.losses, a.summary, a.fit))
    shown = json.loads(a.show)
    # An experiment sweeping widths or sample sizes: its Figure 2 at one of them; over several
    # rules: 2(a) of the first, 2(b) of every rule.
    at = {k: v for k, v in shown.items() if k != "rule"}
    losses, summary, fit = (plotting.where(df, **at) for df in (losses, summary, fit))
    title = ", ".join([a.title] + [f"{k} = {plotting.sweep_label(k, v)}" for k, v in at.items()])
    out = Path(a.out_dir)
    plotting.save_figure(plotting.figure_2a(plotting.where(losses, **shown), title=title, spread=a.spread),
                         out / "fig2a", a.dpi)
    plotting.save_figure(plotting.figure_2b(summary, fit, title=title), out / "fig2b", a.dpi)


def cmd_degree_figure(a):
    import pandas as pd

    from . import plotting

    _imports_done()
    degrees, losses = pd.read_parquet(a.degrees), pd.read_parquet(a.losses)
    plotting.save_figure(plotting.figure_degrees(degrees, losses, title=a.title), Path(a.out), a.dpi)


def cmd_ablation_figures(a):
    import pandas as pd

    from . import plotting

    _imports_done()
    summary, fit = pd.read_parquet(a.summary), pd.read_parquet(a.fit)
    others = {k: v for k, v in json.loads(a.show).items() if k != a.sweep}  # the other swept axes, fixed
    summary, fit = plotting.where(summary, **others), plotting.where(fit, **others)
    out = Path(a.out_dir)
    plotting.save_figure(plotting.figure_ablation_heatmap(summary, a.sweep, title=a.title), out / "ablation_heatmap",
                         a.dpi)
    plotting.save_figure(plotting.figure_ablation_exponent(fit, a.sweep, title=a.title), out / "ablation_exponent",
                         a.dpi)


def cmd_validate(a):
    import pandas as pd

    from . import validation

    _imports_done()
    recipe = json.loads(a.recipe)
    be = _backend(recipe["backend"])
    losses = pd.read_parquet(a.losses)
    # Sampled-data training uses replicate 0's teachers.
    fits = load_teachers(a.teachers, recipe["m_te"]).get(0)
    if fits is None:
        raise SystemExit(f"no replicate 0 teacher file among {a.teachers}")
    teachers = {int(t["coef"].size): (t["features"], t["coef"], float(t["loss"])) for t in fits}
    convergence = validation.convergence_table(pd.concat([pd.read_parquet(p) for p in a.convergence],
                                                         ignore_index=True))
    model, W = _student(recipe, 0)
    files = operator_files_by_replicate(recipe["operator"], a.operator_files, [0])[0]
    cached = _cached_operator(recipe["operator"], files)
    with step("sampled-data training", be):
        curves = validation.sampled_comparison(model, W, teachers, recipe["sampled"], recipe["seed"], backend=be,
                                               operator=recipe["operator"], lanczos=recipe["lanczos"], **cached)
    table = validation.disagreements(losses, curves)
    meta = _metadata(be, recipe=recipe)
    artifacts.save_parquet(a.out_table, table, meta)
    artifacts.save_parquet(a.out_curves, curves, meta)
    artifacts.save_parquet(a.out_convergence, convergence, meta)
    log.info("disagreements:\n%s", table.to_string(index=False))


def cmd_validation_figure(a):
    import pandas as pd

    from . import plotting

    _imports_done()
    table, curves, convergence = (pd.read_parquet(p) for p in (a.table, a.curves, a.convergence))
    plotting.save_figure(plotting.figure_validation(curves, convergence, table, title=a.title), Path(a.out), a.dpi)


def cmd_summary(a):
    import pandas as pd

    folder = Path(a.folder)
    summary = pd.read_parquet(folder / "summary.parquet")
    fit = pd.read_parquet(folder / "fit.parquet")
    table = summary.groupby(["rule", "n", "m_st", "m_te"]).agg(
        L_TE=("L_TE", "mean"), L_ST_min=("L_ST_min", "mean"), ratio_best=("ratio_best", "mean"),
        ratio_spread=("ratio_best", lambda r: r.max() - r.min()), grid_best=("grid_best", "median"),
        ratio_inf_best=("ratio_inf_best", "mean"))
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(f"{folder.name}: {summary['replicate'].nunique()} replicates (means over replicates)")
        print(table.to_string())
    for _, row in fit[fit["scope"] == "all"].iterrows():
        if np.isfinite(row["exponent"]):
            where = " (M_ST varies with M_TE)" if pd.isna(row["m_st"]) else f" at M_ST = {row['m_st']}"
            where += "" if row["n"] == np.inf else f", n = {row['n']:g}"
            print(f"fitted exponent, {row['rule']}, {row['width']} width{where} (log min L_ST vs log L_TE): "
                  f"{row['exponent']:.3f} ± {row['exponent_se']:.3f} (standard error over replicates)")


# --- argument parsing ----------------------------------------------------------------
RECIPE_HELP = "the step's recipe as JSON (rfw2s.plan: what its numbers depend on)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rfw2s", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help, recipe=True):
        s = sub.add_parser(name, help=help, description=help)
        s.set_defaults(func=func)
        if recipe:
            s.add_argument("--recipe", required=True, help=RECIPE_HELP)
        return s

    s = add("teachers", cmd_teachers, "draw and fit every teacher size of one replicate, into one file")
    s.add_argument("--replicate", type=int, required=True)
    s.add_argument("--out", required=True)

    s = add("kernel", cmd_kernel, "population feature-kernel matrix of one student draw")
    s.add_argument("--replicate", type=int, required=True, help="the student draw")
    s.add_argument("--out", required=True)

    s = add("eigh", cmd_eigh, "eigendecomposition of H = G / M")
    s.add_argument("--gram", required=True)
    s.add_argument("--out-eigvals", required=True)
    s.add_argument("--out-eigvecs", required=True)

    s = add("curves", cmd_curves, "exact finite- and infinite-width loss curves of every teacher of each "
                                   "replicate's student draw (one student width), into one table")
    s.add_argument("--teachers", nargs="+", required=True, help="teacher files (python -m rfw2s teachers)")
    s.add_argument("--operator-files", nargs="*", default=[],
                   help="the cached kernel (operator cached) or eigenvalues and eigenvectors (operator eigh) "
                        "of each replicate, in the recipe's replicate order")
    s.add_argument("--out", required=True)

    s = add("degrees", cmd_degrees, "the infinite-width loss and the teacher's error, degree by degree")
    s.add_argument("--teachers", nargs="+", required=True, help="teacher files, one per replicate")
    s.add_argument("--out", required=True)

    s = add("aggregate", cmd_aggregate, "loss, summary and fit tables of one experiment")
    s.add_argument("--experiment", required=True)
    s.add_argument("--curves", nargs="+", required=True)
    for opt in ("--out-losses", "--out-summary", "--out-fit", "--out-table"):
        s.add_argument(opt, required=True)

    s = add("figures", cmd_figures, "Figures 2(a) and 2(b)", recipe=False)
    for opt in ("--losses", "--summary", "--fit", "--out-dir", "--title"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, required=True)
    s.add_argument("--spread", choices=("range", "std"), required=True)
    s.add_argument("--show", default="{}", help="JSON: the swept values to draw (m_st, n, rule) where there are "
                                                "several")

    s = add("degree-figure", cmd_degree_figure, "the loss degree by degree", recipe=False)
    for opt in ("--degrees", "--losses", "--title", "--out"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, required=True)

    s = add("ablation-figures", cmd_ablation_figures, "best-ratio heatmap and exponent against M_ST or n",
            recipe=False)
    for opt in ("--summary", "--fit", "--out-dir", "--title"):
        s.add_argument(opt, required=True)
    s.add_argument("--sweep", choices=("m_st", "n"), default="m_st", help="the swept axis")
    s.add_argument("--show", default="{}", help="JSON: the values of the other swept axes to draw")
    s.add_argument("--dpi", type=int, required=True)

    s = add("validate", cmd_validate, "finite width, infinite width and sampled-data training compared")
    s.add_argument("--losses", required=True)
    s.add_argument("--teachers", nargs="+", required=True)
    s.add_argument("--convergence", nargs="+", required=True, help="curve tables at the convergence widths")
    s.add_argument("--operator-files", nargs="*", default=[], help="the sampled student's cached files, if any")
    for opt in ("--out-table", "--out-curves", "--out-convergence"):
        s.add_argument(opt, required=True)

    s = add("validation-figure", cmd_validation_figure, "the validation figure", recipe=False)
    for opt in ("--table", "--curves", "--convergence", "--title", "--out"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, required=True)

    s = add("summary", cmd_summary, "print an experiment's summary table", recipe=False)
    s.add_argument("folder", help="results/<experiment>")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    args.func(args)
    return 0
