"""Pipeline steps as command-line entry points (``python -m rfw2s <step> ...``).

Each step parses its arguments, loads its inputs, calls one library function
(:mod:`rfw2s.pipeline`, :mod:`rfw2s.analysis`, :mod:`rfw2s.plotting`) and writes what it returns,
atomically. A shared step takes its *recipe* (:mod:`rfw2s.recipes`, as JSON: everything its
numbers depend on) and records it in what it writes; the cached files it reads come named
(``--operator-files gram_r0=PATH ...``). Nothing here knows of Snakemake; a step runs by hand
with the same arguments (``python -m rfw2s <step> --help``).

A GPU step (kernel, eigh, curves, validation) whose recipe says CuPy stops before writing
anything where no GPU is usable (:func:`rfw2s.backend.for_job`): it never computes elsewhere.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from . import artifacts, paths, pipeline, resources
from . import backend as backends
from . import target as targets
from .pipeline import timed
from .recipes import CurvesRecipe, DegreesRecipe, EighRecipe, KernelRecipe, TablesRecipe, TeachersRecipe, \
    ValidationRecipe, parse

log = logging.getLogger("rfw2s")


class StepFailed(SystemExit):
    """A step cannot run as asked: its message is the reason; nothing was written."""


def _imports_done() -> None:
    """Log the job's start-up so far (interpreter and imports, from ``python -m rfw2s``), which
    bench/stage_times.py weighs against the job's wall time."""
    started = getattr(sys.modules.get("__main__"), "STARTED", None)
    if started is not None:
        log.info("start-up (interpreter and imports): %.3f s", time.perf_counter() - started)


def _recipe(a, kind):
    try:
        return parse(a.recipe, kind)
    except ValueError as exc:
        raise StepFailed(f"--recipe: {exc}") from None


def _backend(recipe, a) -> backends.Backend:
    """The backend the recipe names, strictly (a GPU step is handed the plan's declared GPU memory)."""
    target = targets.handed_down()
    declared = target.gpu_memory if target is not None and target.declared_gpu_memory else None
    try:
        be = backends.for_job(recipe.backend, gpus=getattr(a, "gpus", None), declared_gpu_memory=declared)
    except backends.JobError as exc:
        raise StepFailed(f"{recipe.step} job stopped before writing anything: {exc}") from None
    log.info("backend: %s (planned %s) on %s", be.name, recipe.backend, be.device)
    return be


def _metadata(be: backends.Backend | None = None, **fields) -> dict:
    meta = {"versions": backends.versions(), **fields}
    if be is not None:
        meta.update(backend=be.name, device=be.device)
    return meta


def _named_files(items: list[str]) -> dict[str, str]:
    """``NAME=PATH`` arguments as a mapping."""
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise StepFailed(f"--operator-files takes NAME=PATH items (gram_r0=..., eigvecs_r1=...); got {item!r}")
        named[name] = path
    return named


def _cached_operators(operator: str, items: list[str], replicates) -> dict[int, dict]:
    """Replicate -> the cached arrays a solve through ``operator`` reads (checked on load)."""
    try:
        files = paths.by_replicate(operator, _named_files(items), replicates)
    except ValueError as exc:
        raise StepFailed(f"--operator-files: {exc}") from None
    arrays = {}
    for r, named in files.items():
        if operator == "eigh":
            arrays[r] = {"spectrum": (artifacts.load_npy(named["eigvals"]), artifacts.load_npy(named["eigvecs"]))}
        elif operator == "cached":
            arrays[r] = {"kernel": artifacts.load_npy(named["gram"])}
    return arrays


def _teachers(files, sizes) -> dict[int, list[dict]]:
    try:
        return pipeline.teachers_of([artifacts.load_npz(p) for p in files], sizes)
    except ValueError as exc:
        raise StepFailed(f"{exc}: {list(files)}") from None


def _memory_check(be):
    return lambda need, what: resources.ensure_memory(need, be.name, what)


# --- steps -------------------------------------------------------------------------
def cmd_teachers(a):
    """Every teacher size of one replicate in one job: the job's start-up costs more than its fits."""
    _imports_done()
    recipe = _recipe(a, TeachersRecipe)
    _backend(recipe, a)
    fits = pipeline.fit_teachers(recipe, a.replicate)
    artifacts.save_npz(a.out, **fits, recipe=np.asarray(recipe.to_json()))


def cmd_kernel(a):
    _imports_done()
    recipe = _recipe(a, KernelRecipe)
    be = _backend(recipe, a)
    M, d = recipe.m_st, int(recipe.model.get("d", 0))
    log.info("kernel: M_ST=%d, d=%d, %.2f GiB, built %s", M, d, M * M * 8 / 2**30, recipe.layout)
    resources.ensure_disk(a.out, 8 * M * M + 128, f"the {M} x {M} kernel matrix")
    resources.ensure_memory(resources.kernel_memory(M, d, recipe.layout), be.name,
                            "the kernel" if recipe.layout == "whole" else "a kernel block")
    with artifacts.npy_rows(a.out, (M, M), {"recipe": recipe.as_dict(), "replicate": a.replicate}) as write:
        for block in pipeline.kernel_blocks(recipe, a.replicate, be):
            write(block)


def cmd_eigh(a):
    _imports_done()
    recipe = _recipe(a, EighRecipe)
    be = _backend(recipe, a)
    G = artifacts.load_npy(a.gram)
    M = G.shape[0]
    log.info("eigh: %d x %d on %s", M, M, be.device)
    resources.ensure_disk(a.out_eigvecs, 8 * M * M + 8 * M + 256, f"the {M} x {M} eigenvectors")
    resources.ensure_memory(resources.eigh_memory(M), be.name, f"dense eigh of a {M} x {M} matrix")
    lam, V = pipeline.eigendecomposition(G, be)
    with timed("write eigendecomposition"):
        record = {"of": "H = G / M", "gram": a.gram, "recipe": recipe.as_dict(), "backend": be.name}
        artifacts.save_npy(a.out_eigvals, lam, record)
        artifacts.save_npy(a.out_eigvecs, backends.to_numpy(V), record)


def cmd_curves(a):
    """Every replicate's draw of one student width in one job: a GPU job's start-up (CuPy
    import, CUDA context) costs more than one draw's curves. No pandas here (its import would
    be a large part of a small job): the rows go to parquet as NumPy columns."""
    _imports_done()
    recipe = _recipe(a, CurvesRecipe)
    be = _backend(recipe, a)
    cached = _cached_operators(recipe.operator, a.operator_files, recipe.replicates)
    teachers = _teachers(a.teachers, recipe.m_te)
    try:
        table = pipeline.curve_table(recipe, teachers, cached, be, check_memory=_memory_check(be))
    except ValueError as exc:
        raise StepFailed(str(exc)) from None
    artifacts.save_parquet(a.out, table.columns, _metadata(be, recipe=recipe.as_dict(),
                                                           infinite_width_truncation=table.truncation))


def cmd_degrees(a):
    _imports_done()
    recipe = _recipe(a, DegreesRecipe)
    table = pipeline.degree_table(recipe, _teachers(a.teachers, recipe.m_te))
    artifacts.save_parquet(a.out, table, _metadata(recipe=recipe.as_dict()))


def cmd_aggregate(a):
    import pandas as pd

    from . import analysis

    _imports_done()
    recipe = _recipe(a, TablesRecipe)
    curves = pd.concat([pd.read_parquet(p) for p in a.curves], ignore_index=True)
    losses, summary, fit = analysis.tables(curves, recipe.fit_by)
    meta = _metadata(experiment=a.experiment, recipe=recipe.as_dict(), curves=list(a.curves))
    artifacts.save_parquet(a.out_losses, losses, meta)
    artifacts.save_parquet(a.out_summary, summary, meta)
    artifacts.save_parquet(a.out_fit, fit, meta)
    with artifacts.atomic_path(a.out_table) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6g")
    log.info("summary:\n%s\nfit:\n%s", summary.to_string(index=False), fit.to_string(index=False))
    for note in analysis.undefined_pgr(summary):
        log.warning(note)


def cmd_figures(a):
    import pandas as pd

    from . import plotting

    _imports_done()
    losses, summary, fit = (pd.read_parquet(p) for p in (a.losses, a.summary, a.fit))
    plotting.figure_2_files(losses, summary, fit, json.loads(a.show), a.title, Path(a.out_dir), a.dpi, a.spread)


def cmd_accuracy_figure(a):
    import pandas as pd

    from . import plotting

    _imports_done()
    plotting.accuracy_file(pd.read_parquet(a.losses), json.loads(a.show), a.title, Path(a.out), a.dpi, a.spread)


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
    plotting.ablation_files(summary, fit, a.sweep, json.loads(a.show), a.title, Path(a.out_dir), a.dpi)


def cmd_validate(a):
    import pandas as pd

    _imports_done()
    recipe = _recipe(a, ValidationRecipe)
    be = _backend(recipe, a)
    losses = pd.read_parquet(a.losses)
    convergence = pd.concat([pd.read_parquet(p) for p in a.convergence], ignore_index=True)
    cached = _cached_operators(recipe.operator, a.operator_files, [0]).get(0, {})
    try:
        table, curves, convergence = pipeline.validation_tables(recipe, losses, _teachers(a.teachers, recipe.m_te),
                                                                convergence, cached, be)
    except ValueError as exc:
        raise StepFailed(str(exc)) from None
    meta = _metadata(be, recipe=recipe.as_dict())
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

    from . import analysis

    folder = Path(a.folder)
    print(f"{folder.name}: " + analysis.overview(pd.read_parquet(folder / "summary.parquet"),
                                                 pd.read_parquet(folder / "fit.parquet")))


# --- argument parsing ----------------------------------------------------------------
RECIPE_HELP = "the step's recipe as JSON (rfw2s.recipes: what its numbers depend on)"
GPUS_HELP = "the gpu resource the workflow gave this job (named in the message if CuPy finds no GPU)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rfw2s", description=__doc__,
                                epilog="--blas-threads N|all (anywhere on the line): BLAS threads of this step")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, func, help, recipe=True, gpu=False):
        s = sub.add_parser(name, help=help, description=help)
        s.set_defaults(func=func)
        if recipe:
            s.add_argument("--recipe", required=True, help=RECIPE_HELP)
        if gpu:
            s.add_argument("--gpus", help=GPUS_HELP)
        return s

    s = add("teachers", cmd_teachers, "draw and fit every teacher size of one replicate, into one file")
    s.add_argument("--replicate", type=int, required=True)
    s.add_argument("--out", required=True)

    s = add("kernel", cmd_kernel, "population feature-kernel matrix of one student draw", gpu=True)
    s.add_argument("--replicate", type=int, required=True, help="the student draw")
    s.add_argument("--out", required=True)

    s = add("eigh", cmd_eigh, "eigendecomposition of H = G / M", gpu=True)
    s.add_argument("--gram", required=True)
    s.add_argument("--out-eigvals", required=True)
    s.add_argument("--out-eigvecs", required=True)

    operator_help = ("the cached files of the recipe's operator, named by what they hold and their replicate: "
                     "gram_r0=PATH (operator cached), eigvals_r0=PATH eigvecs_r0=PATH (operator eigh)")
    s = add("curves", cmd_curves, "exact finite- and infinite-width loss curves of every teacher of each "
                                   "replicate's student draw (one student width), into one table", gpu=True)
    s.add_argument("--teachers", nargs="+", required=True, help="teacher files (python -m rfw2s teachers)")
    s.add_argument("--operator-files", nargs="*", default=[], help=operator_help)
    s.add_argument("--out", required=True)

    s = add("degrees", cmd_degrees, "the infinite-width loss and the teacher's error, degree by degree")
    s.add_argument("--teachers", nargs="+", required=True, help="teacher files, one per replicate")
    s.add_argument("--out", required=True)

    s = add("aggregate", cmd_aggregate, "loss, summary and fit tables of one experiment")
    s.add_argument("--experiment", required=True)
    s.add_argument("--curves", nargs="+", required=True)
    for opt in ("--out-losses", "--out-summary", "--out-fit", "--out-table"):
        s.add_argument(opt, required=True)

    s = add("figures", cmd_figures, "Figures 2(a) and 2(b), and the PGR against M_TE", recipe=False)
    for opt in ("--losses", "--summary", "--fit", "--out-dir", "--title"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, required=True)
    s.add_argument("--spread", choices=("range", "std"), required=True)
    s.add_argument("--show", default="{}", help="JSON: the swept values to draw (m_st, n, rule) where there are "
                                                "several")

    s = add("accuracy-figure", cmd_accuracy_figure, "accuracy against training time (a target with classes)",
            recipe=False)
    for opt in ("--losses", "--title", "--out"):
        s.add_argument(opt, required=True)
    s.add_argument("--dpi", type=int, required=True)
    s.add_argument("--spread", choices=("range", "std"), required=True)
    s.add_argument("--show", default="{}", help="JSON: the swept values to draw")

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

    s = add("validate", cmd_validate, "finite width, infinite width and sampled-data training compared", gpu=True)
    s.add_argument("--losses", required=True)
    s.add_argument("--teachers", nargs="+", required=True)
    s.add_argument("--convergence", nargs="+", required=True, help="curve tables at the convergence widths")
    s.add_argument("--operator-files", nargs="*", default=[], help=operator_help + " of the sampled student")
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
