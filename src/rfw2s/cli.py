"""Pipeline steps as command-line entry points (``python -m rfw2s <step> ...``).

Each step reads its inputs, calls the library, and writes its artifacts atomically.
Nothing here knows of Snakemake; a step is runnable by hand with the same arguments.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from . import artifacts, config, resources, seeding, solve
from . import backend as backends
from .config import DENSE_EIGH_MATRICES
from .curves import gram_matrix, gram_tiles, stored_kernel
from .models import make_model

log = logging.getLogger("rfw2s")


@contextmanager
def step(name: str, be: backends.Backend | None = None):
    start = time.perf_counter()
    yield
    if be is not None:
        be.synchronize()
    log.info("%s: %.3f s", name, time.perf_counter() - start)


def _model(spec_json: str):
    spec = json.loads(spec_json)
    return make_model(spec.pop("name"), **spec)


def _backend(name: str) -> backends.Backend:
    be = backends.resolve(name)
    log.info("backend: %s (requested %s) on %s", be.name, name, be.device)
    return be


def _metadata(be: backends.Backend | None = None, **params) -> dict:
    meta = {"versions": backends.versions(), "solver_version": solve.SOLVER_VERSION, "params": params}
    if be is not None:
        meta.update(backend=be.name, device=be.device)
    return meta


# --- steps -------------------------------------------------------------------------
def cmd_draw(a):
    model = _model(a.model)
    with step(f"draw {a.role} M={a.size} replicate={a.replicate}"):
        U = model.sample_features(seeding.seed_sequence(a.seed, a.role, a.size, a.replicate), a.size)
        artifacts.save_npy(a.out, U, {"model": json.loads(a.model), "role": a.role, "seed": a.seed,
                                      "size": a.size, "replicate": a.replicate})


def draw_student(model, seed: int, m_st: int, replicate: int) -> np.ndarray:
    """Student ``replicate`` of width ``m_st``: drawn where it is used (a draw costs less than
    a job's start-up), from the same seed stream as ``python -m rfw2s draw --role student``."""
    return model.sample_features(seeding.seed_sequence(seed, "student", m_st, replicate), m_st)


def cmd_kernel(a):
    model, be = _model(a.model), _backend(a.backend)
    W = draw_student(model, a.seed, a.m_st, a.replicate)
    M = W.shape[0]
    log.info("kernel: M_ST=%d, d=%d, %.2f GiB", M, W.shape[1], M * M * 8 / 2**30)
    resources.ensure_disk(a.out, 8 * M * M + 128, f"the {M} x {M} kernel matrix")
    layout = config.kernel_job_layout(json.loads(a.model).get("d", 0))  # as the job's memory resource
    resources.ensure_memory(config.memory_needed(M, W.shape[1], layout, 0, 0), be.name,
                            "the kernel" if layout == "built" else "a kernel block")
    Wx = be.asarray(W)
    with step("kernel", be), artifacts.npy_rows(a.out, (M, M), {"model": json.loads(a.model), "seed": a.seed, "m_st": M,
                                                           "replicate": a.replicate}) as write:
        if layout == "built":
            write(backends.to_numpy(gram_matrix(model, Wx)))
        else:
            for _, tile in gram_tiles(model, Wx):  # the matrix-free solver's tiles, here stored
                write(backends.to_numpy(tile))


def cmd_eigh(a):
    be = _backend(a.backend)
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
        record = {"of": "H = G / M", "gram": a.gram, "backend": be.name}
        artifacts.save_npy(a.out_eigvals, backends.to_numpy(lam), record)
        artifacts.save_npy(a.out_eigvecs, backends.to_numpy(V), record)
    lam = backends.to_numpy(lam)
    log.info("eigenvalues of H = G/M: max %.4e, min %.4e, %d at or below cut-off",
             lam.max(), lam.min(), int((lam <= solve.relative_cutoff(lam, lam.size)).sum()))


def cmd_teacher(a):
    # Fits are at most M_TE x M_TE: under `auto` they stay on NumPy, sparing the job the
    # GPU's start-up (CuPy import, CUDA context), which would cost more than the fits. All
    # sizes of one replicate in one job: the job's start-up costs more than its fits.
    if len(a.model) not in (1, len(a.m_te)):
        raise SystemExit(f"--model takes one spec, or one per --m-te size ({len(a.m_te)}); got {len(a.model)}")
    models = [_model(spec) for spec in a.model] * (len(a.m_te) if len(a.model) == 1 else 1)
    be = _backend("numpy" if a.backend == "auto" else a.backend)
    fits = {"replicate": np.int64(a.replicate), "m_te": np.asarray(a.m_te, dtype=np.int64)}
    for model, m_te in zip(models, a.m_te):
        U = model.sample_features(seeding.seed_sequence(a.seed, "teacher", m_te, a.replicate), m_te)
        with step(f"teacher fit M_TE={m_te}", be):
            fit = solve.fit_teacher(model, U, backend=be)
        log.info("M_TE=%d: L_TE = %.6e (rank %d of %d)", m_te, fit.loss, fit.rank, m_te)
        fits.update({f"features_{m_te}": U, f"coef_{m_te}": fit.coef, f"loss_{m_te}": np.float64(fit.loss),
                     f"rank_{m_te}": np.int64(fit.rank)})
    artifacts.save_npz(a.out, **fits)


def load_teachers(paths, sizes) -> dict[int, list[dict]]:
    """Replicate -> the teachers of ``sizes`` (in that order), each ``{features, coef, loss}``,
    from teacher files (one per experiment and replicate, holding several sizes)."""
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


def _solve_options(solver, tol, max_steps, build_kernel, cached, model, W, be) -> dict:
    """Solver and operator arguments -> keyword arguments of :func:`rfw2s.curves.exact_curves`
    for the student ``W``; ``cached`` holds the paths of its cached ``eigvals``, ``eigvecs`` or
    ``gram``, if any."""
    if bool(cached.get("eigvals")) != (solver == "eigh") or bool(cached.get("eigvals")) != bool(cached.get("eigvecs")):
        raise SystemExit("--eigvals and --eigvecs go together, and with --solver eigh only")
    options = {"solver": solver, "tol": tol, "max_steps": max_steps}
    if cached.get("eigvals"):
        options["spectrum"] = (artifacts.load_npy(cached["eigvals"]), artifacts.load_npy(cached["eigvecs"]))
    elif cached.get("gram"):
        options["gram"] = artifacts.load_npy(cached["gram"])
    elif build_kernel:
        with step(f"kernel built in memory: M_ST={W.shape[0]}", be):
            options["gram"] = stored_kernel(model, be.asarray(W))
    return options


def cmd_curves(a):
    import pandas as pd

    from . import analysis

    model, be = _model(a.model), _backend(a.backend)
    ts = config.time_grid({"min": a.t_min, "max": a.t_max, "num": a.t_num})
    layout = {"eigvals": a.eigvals, "eigvecs": a.eigvecs, "gram": a.gram}
    counts = {name: len(v) for name, v in layout.items() if v}
    if any(n != len(a.replicate) for n in counts.values()):
        raise SystemExit(f"one of each cached operator file per --replicate ({len(a.replicate)}); got {counts}")
    teachers = load_teachers(a.teachers, a.m_te)
    absent = sorted(set(a.replicate) - set(teachers))
    if absent:
        raise SystemExit(f"replicates {absent} have no teacher file among {a.teachers}")
    # All replicates of one width in one job: a GPU job's start-up (CuPy import, CUDA
    # context) costs more than one draw's curves (bench/RESULTS.md).
    frames = []
    for i, replicate in enumerate(a.replicate):
        cached = {name: v[i] for name, v in layout.items() if v}
        W = draw_student(model, a.seed, a.m_st, replicate)
        frames.append(_curves_of_one_draw(a, model, be, ts, replicate, W, cached, teachers[replicate]))
    df = pd.concat(frames, ignore_index=True)
    artifacts.save_parquet(a.out, df[analysis.LOSS_COLUMNS], _metadata(be, t=[a.t_min, a.t_max, a.t_num],
                                                                       solver=a.solver))


def _curves_of_one_draw(a, model, be, ts, replicate, W, cached, teachers):
    import pandas as pd

    from .curves import exact_curves

    how = "eigh" if cached.get("eigvals") else "dense" if cached.get("gram") or a.build_kernel else "matrix_free"
    # The eigenvectors are read, not computed, here: one M x M matrix, not eigh's peak.
    need = (8 * W.shape[0] ** 2 if how == "eigh" else
            config.memory_needed(W.shape[0], W.shape[1], how, len(teachers), a.max_steps))
    resources.ensure_memory(need, be.name, f"{a.solver} curves at M_ST = {W.shape[0]}")
    options = _solve_options(a.solver, a.tol, a.max_steps, a.build_kernel, cached, model, W, be)
    with step(f"{a.solver} curves: replicate {replicate}, M_ST={W.shape[0]}, {len(teachers)} teachers, "
              f"{ts.size} times", be):
        result = exact_curves(model, W, [(t["features"], t["coef"]) for t in teachers], ts, backend=be, **options)
    del options  # the kernel or spectrum: free before the next draw's
    if result.converged:
        log.info("solver %s: %d Lanczos steps, achieved tolerance %.2e", result.solver, result.steps,
                 result.achieved_tol)
    else:
        log.warning("solver %s: the step budget %d reached only %.2e, NOT the requested %.0e (recorded in "
                    "the achieved_tol column); raise lanczos.max_steps", result.solver, result.steps,
                    result.achieved_tol, a.tol)
    frames = []
    for teacher, L_ST in zip(teachers, result.losses):
        L_inf = np.full_like(ts, np.nan)
        if hasattr(model, "infinite_width"):
            curve = model.infinite_width(teacher["features"], teacher["coef"], ts)
            L_inf = curve.losses
            if curve.degree is not None:
                log.info("M_TE=%d infinite width: Gegenbauer degree %d, truncation error <= %.1e relative",
                         teacher["coef"].size, curve.degree, float(np.max(curve.error_bound / L_inf)))
        L_TE = float(teacher["loss"])
        frames.append(pd.DataFrame({
            "replicate": replicate, "m_te": int(teacher["coef"].size), "m_st": W.shape[0], "d": W.shape[1],
            "t": ts, "L_TE": L_TE, "L_ST": L_ST, "ratio": L_ST / L_TE, "L_ST_inf": L_inf, "ratio_inf": L_inf / L_TE,
            "solver": result.solver, "steps": result.steps, "achieved_tol": result.achieved_tol}))
        best = int(np.argmin(L_ST))
        log.info("replicate %d, M_TE=%d: best ratio %.4f at t = %.4g", replicate, teacher["coef"].size,
                 L_ST[best] / L_TE, ts[best])
    return pd.concat(frames, ignore_index=True)


def cmd_aggregate(a):
    import pandas as pd

    from . import analysis

    losses = analysis.sort_losses(pd.concat([pd.read_parquet(p) for p in a.curves], ignore_index=True))
    summary = analysis.summarize(losses)
    fit = analysis.fit_exponents(summary)
    meta = _metadata(experiment=a.experiment)
    artifacts.save_parquet(a.out_losses, losses, meta)
    artifacts.save_parquet(a.out_summary, summary, meta)
    artifacts.save_parquet(a.out_fit, fit, meta)
    with artifacts.atomic_path(a.out_table) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    log.info("summary:\n%s\nfit:\n%s", summary.to_string(index=False), fit.to_string(index=False))


def cmd_figures(a):
    import pandas as pd

    from . import plotting

    losses, summary, fit = (pd.read_parquet(p) for p in (a.losses, a.summary, a.fit))
    out = Path(a.out_dir)
    plotting.save_figure(plotting.figure_2a(losses, title=a.title, spread=a.spread), out / "fig2a", a.dpi)
    plotting.save_figure(plotting.figure_2b(summary, fit, title=a.title), out / "fig2b", a.dpi)


def cmd_ablation_figures(a):
    import pandas as pd

    from . import plotting

    summary, fit = pd.read_parquet(a.summary), pd.read_parquet(a.fit)
    out = Path(a.out_dir)
    plotting.save_figure(plotting.figure_ablation_heatmap(summary, title=a.title), out / "ablation_heatmap", a.dpi)
    plotting.save_figure(plotting.figure_ablation_exponent(fit, title=a.title), out / "ablation_exponent", a.dpi)


def cmd_validate(a):
    import pandas as pd

    from . import validation

    model, be = _model(a.model), _backend(a.backend)
    settings = json.loads(a.settings)
    losses = pd.read_parquet(a.losses)
    # Sampled-data training uses replicate 0's teachers.
    fits = load_teachers(a.teachers, a.m_te).get(0)
    if fits is None:
        raise SystemExit(f"no replicate 0 teacher file among {a.teachers}")
    teachers = {int(t["coef"].size): (t["features"], t["coef"], float(t["loss"])) for t in fits}
    convergence = validation.convergence_table(pd.concat([pd.read_parquet(p) for p in a.convergence],
                                                         ignore_index=True))
    W = draw_student(model, a.seed, a.m_st, 0)
    cached = {name: v for name, v in {"eigvals": a.eigvals, "eigvecs": a.eigvecs, "gram": a.gram}.items() if v}
    if any(len(v) != 1 for v in cached.values()):
        raise SystemExit(f"validate takes one student, so one of each cached operator file; got {cached}")
    options = _solve_options(a.solver, a.tol, a.max_steps, a.build_kernel, {k: v[0] for k, v in cached.items()},
                             model, W, be)
    with step("sampled-data training", be):
        curves = validation.sampled_comparison(model, W, teachers, settings["sampled"], a.seed, backend=be,
                                               **options)
    table = validation.disagreements(losses, curves)
    meta = _metadata(be, settings=settings)
    artifacts.save_parquet(a.out_table, table, meta)
    artifacts.save_parquet(a.out_curves, curves, meta)
    artifacts.save_parquet(a.out_convergence, convergence, meta)
    log.info("disagreements:\n%s", table.to_string(index=False))


def cmd_validation_figure(a):
    import pandas as pd

    from . import plotting

    table, curves, convergence = (pd.read_parquet(p) for p in (a.table, a.curves, a.convergence))
    plotting.save_figure(plotting.figure_validation(curves, convergence, table, title=a.title), Path(a.out), a.dpi)


def cmd_summary(a):
    import pandas as pd

    folder = Path(a.folder)
    summary = pd.read_parquet(folder / "summary.parquet")
    fit = pd.read_parquet(folder / "fit.parquet")
    table = summary.groupby(["m_st", "m_te"]).agg(
        L_TE=("L_TE", "mean"), L_ST_min=("L_ST_min", "mean"), ratio_best=("ratio_best", "mean"),
        ratio_spread=("ratio_best", lambda r: r.max() - r.min()), t_best=("t_best", "median"),
        ratio_inf_best=("ratio_inf_best", "mean"))
    with pd.option_context("display.float_format", "{:.4g}".format, "display.width", 120):
        print(f"{folder.name}: {summary['replicate'].nunique()} replicates (means over replicates)")
        print(table.to_string())
    for _, row in fit[fit["scope"] == "all"].iterrows():
        if np.isfinite(row["exponent"]):
            where = "" if row["m_st"] < 0 else f" at M_ST = {row['m_st']}"
            print(f"fitted exponent, {row['width']} width{where} (log min_t L_ST vs log L_TE): "
                  f"{row['exponent']:.3f} ± {row['exponent_se']:.3f} (standard error over replicates)")


# --- argument parsing ----------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rfw2s", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help):
        s = sub.add_parser(name, help=help)
        s.set_defaults(func=func)
        return s

    def model_and_backend(s):
        s.add_argument("--model", required=True, help='model spec as JSON, e.g. {"name": "relu_sphere", "d": 32}')
        s.add_argument("--backend", default="auto", choices=backends.BACKENDS)

    s = add("draw", cmd_draw, "draw feature directions")
    s.add_argument("--model", required=True)
    s.add_argument("--role", choices=seeding.ROLES, default="student")
    for opt in ("--seed", "--size", "--replicate"):
        s.add_argument(opt, type=int, required=True)
    s.add_argument("--out", required=True)

    s = add("kernel", cmd_kernel, "population feature-kernel matrix of a student draw")
    model_and_backend(s)
    for opt in ("--seed", "--m-st", "--replicate"):  # the student draw's
        s.add_argument(opt, type=int, required=True)
    s.add_argument("--out", required=True)

    s = add("eigh", cmd_eigh, "eigendecomposition of H = G / M")
    s.add_argument("--backend", default="auto", choices=backends.BACKENDS)
    s.add_argument("--gram", required=True)
    s.add_argument("--out-eigvals", required=True)
    s.add_argument("--out-eigvecs", required=True)

    s = add("teacher", cmd_teacher, "draw and fit the teachers of one replicate, into one file")
    s.add_argument("--model", nargs="+", required=True, help="model spec as JSON: one, or one per --m-te size")
    s.add_argument("--backend", default="auto", choices=backends.BACKENDS)
    for opt in ("--seed", "--replicate"):
        s.add_argument(opt, type=int, required=True)
    s.add_argument("--m-te", type=int, nargs="+", required=True)
    s.add_argument("--out", required=True)

    def solve_options(s):
        s.add_argument("--solver", choices=("lanczos", "eigh"), default="lanczos")
        s.add_argument("--tol", type=float, default=1e-10, help="Lanczos: relative change to stop at")
        s.add_argument("--max-steps", type=int, default=400, help="Lanczos: step budget")
        how = s.add_mutually_exclusive_group(required=True)
        how.add_argument("--eigvals", nargs="+", help="cached eigenvalues (with --eigvecs), one per student: "
                                                      "solver eigh")
        how.add_argument("--gram", nargs="+", help="cached kernel matrix, one per student: Lanczos on it")
        how.add_argument("--build-kernel", action="store_true", help="Lanczos on the kernel built here, not cached")
        how.add_argument("--matrix-free", action="store_true", help="Lanczos on kernel tiles built on the fly")
        s.add_argument("--eigvecs", nargs="+")
        s.add_argument("--m-te", type=int, nargs="+", required=True, help="teacher sizes to use from --teachers")

    s = add("curves", cmd_curves, "exact finite-width loss curves of every teacher of each student draw "
                                   "(the replicates of one width), into one table")
    model_and_backend(s)
    s.add_argument("--seed", type=int, required=True, help="the student draws' seed")
    s.add_argument("--m-st", type=int, required=True, help="the students' width")
    s.add_argument("--replicate", type=int, nargs="+", required=True, help="the student draws, one curve set each")
    s.add_argument("--out", required=True)
    s.add_argument("--teachers", nargs="+", required=True, help="teacher files (python -m rfw2s teacher)")
    solve_options(s)
    s.add_argument("--t-min", type=float, required=True)
    s.add_argument("--t-max", type=float, required=True)
    s.add_argument("--t-num", type=int, required=True)

    s = add("aggregate", cmd_aggregate, "loss, summary and fit tables of one experiment")
    s.add_argument("--experiment", required=True)
    s.add_argument("--curves", nargs="+", required=True)
    for opt in ("--out-losses", "--out-summary", "--out-fit", "--out-table"):
        s.add_argument(opt, required=True)

    s = add("figures", cmd_figures, "Figures 2(a) and 2(b)")
    for opt in ("--losses", "--summary", "--fit", "--out-dir", "--title"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, default=150)
    s.add_argument("--spread", choices=("range", "std"), default="range")

    s = add("ablation-figures", cmd_ablation_figures, "best-ratio heatmap and exponent against M_ST")
    for opt in ("--summary", "--fit", "--out-dir", "--title"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, default=150)

    s = add("validate", cmd_validate, "finite width, infinite width and sampled-data training compared")
    model_and_backend(s)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--settings", required=True, help="the experiment's validation settings as JSON")
    s.add_argument("--losses", required=True)
    s.add_argument("--teachers", nargs="+", required=True)
    s.add_argument("--convergence", nargs="+", required=True, help="curve tables at the convergence widths")
    s.add_argument("--m-st", type=int, required=True, help="the width of the sampled-data student (replicate 0)")
    solve_options(s)
    for opt in ("--out-table", "--out-curves", "--out-convergence"):
        s.add_argument(opt, required=True)

    s = add("validation-figure", cmd_validation_figure, "the validation figure")
    for opt in ("--table", "--curves", "--convergence", "--title", "--out"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, default=150)

    s = add("summary", cmd_summary, "print an experiment's summary table")
    s.add_argument("folder", help="results/<experiment>")
    return p


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    args.func(args)
    return 0
