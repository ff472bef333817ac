"""One library function per pipeline step: a recipe (:mod:`rfw2s.recipes`) and the step's inputs,
loaded, in; its arrays or tables out. :mod:`rfw2s.cli` parses a job's arguments, loads its files,
calls the function here and writes what it returns; nothing here reads or writes a file, so the
tests reach every step without a subprocess.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from . import seeding, solve
from .backend import Backend, to_numpy
from .finite_sample import draw_samples
from .models import build_spec
from .recipes import CurvesRecipe, DegreesRecipe, KernelRecipe, SolveRecipe, TeachersRecipe, ValidationRecipe

log = logging.getLogger("rfw2s")


@contextmanager
def timed(name: str, be: Backend | None = None):
    """Log how long the block took (after the device finished, on a GPU)."""
    start = time.perf_counter()
    yield
    if be is not None:
        be.synchronize()
    log.info("%s: %.3f s", name, time.perf_counter() - start)


def student(recipe: SolveRecipe | KernelRecipe, replicate: int):
    """The concrete model and the student draw of ``replicate`` that ``recipe`` names."""
    model = build_spec(recipe.model)
    return model, seeding.draw(model, recipe.seed, "student", recipe.m_st, replicate)


# --- teachers ------------------------------------------------------------------------
def fit_teachers(recipe: TeachersRecipe, replicate: int) -> dict[str, np.ndarray]:
    """Every teacher size of one replicate: its features, coefficients, loss and rank, by name
    (``features_<m>``, ``coef_<m>``, ``loss_<m>``, ``rank_<m>``), with the replicate and sizes."""
    fits = {"replicate": np.int64(replicate), "m_te": np.asarray(recipe.m_te, dtype=np.int64)}
    samples = recipe.samples
    for spec, m_te in zip(recipe.models, recipe.m_te):
        model = build_spec(spec)
        U = seeding.draw(model, recipe.seed, "teacher", m_te, replicate)
        X = None if samples is None else draw_samples(model, samples["seed"], samples["n"], replicate)
        fitted_on = model if recipe.split is None else model.restricted(split_of(recipe, model, replicate)["teacher"])
        where = ("" if X is None else f" on {len(X)} inputs") + ("" if recipe.split is None else
                                                                   f" on its split's {fitted_on.n_rows} rows")
        with timed(f"teacher fit M_TE={m_te}{where}"):
            fit = solve.fit_teacher(fitted_on, U, samples=X, ridge=(samples or {}).get("ridge", 0.0),
                                    backend=recipe.backend)
        log.info("M_TE=%d: L_TE = %.6e (rank %d of %d)", m_te, fit.loss, fit.rank, m_te)
        fits.update({f"features_{m_te}": U, f"coef_{m_te}": fit.coef, f"loss_{m_te}": np.float64(fit.loss),
                     f"rank_{m_te}": np.int64(fit.rank)})
    return fits


def split_of(recipe, model, replicate: int) -> dict[str, np.ndarray]:
    """The rows of each role (teacher, student, test) of the recipe's split, for ``replicate``."""
    from .datasets import split_rows

    return split_rows(model.n_rows, recipe.split, recipe.seed, replicate)


def teachers_of(fits: list[dict[str, np.ndarray]], sizes) -> dict[int, list[dict]]:
    """Replicate -> the teachers of ``sizes`` (in that order), each ``{features, coef, loss}``,
    from the contents of teacher files (:func:`fit_teachers`; one per replicate)."""
    found: dict[int, dict[int, dict]] = {}
    for data in fits:
        by_size = found.setdefault(int(data["replicate"]), {})
        for m in data["m_te"].tolist():
            by_size[m] = {"features": data[f"features_{m}"], "coef": data[f"coef_{m}"], "loss": data[f"loss_{m}"]}
    missing = {r: sorted(set(sizes) - set(by_size)) for r, by_size in found.items() if set(sizes) - set(by_size)}
    if missing:
        raise ValueError(f"teacher sizes {missing} (replicate: sizes) are in none of the teacher files")
    return {r: [by_size[m] for m in sizes] for r, by_size in sorted(found.items())}


# --- kernel ------------------------------------------------------------------------------
def kernel_blocks(recipe: KernelRecipe, replicate: int, be: Backend):
    """The kernel of one student draw as host row blocks, in order, built in the recipe's layout
    (whole: one block; tiles: the matrix-free solver's tiles, each overwritten by the next)."""
    from .curves import gram_matrix, gram_tiles

    model, W = student(recipe, replicate)
    Wx = be.asarray(W)
    with timed("kernel", be):
        if recipe.layout == "whole":
            yield to_numpy(gram_matrix(model, Wx, "whole"))
        else:
            for _, tile in gram_tiles(model, Wx):
                yield to_numpy(tile)


# --- eigh --------------------------------------------------------------------------------
def eigendecomposition(G, be: Backend):
    """The eigenpairs of ``H = G / M`` (round-off negatives clipped), on the job's backend, with
    the spectrum's range and how many eigenvalues sit at or below the pseudo-inverse cut-off logged."""
    from .dense import spectrum_of_gram
    from .spectral import relative_cutoff

    with timed("load kernel", be):
        Gx = be.asarray(G)
    with timed("eigh", be):
        lam, V = spectrum_of_gram(Gx, be)
    host = to_numpy(lam)
    log.info("eigenvalues of H = G/M: max %.4e, min %.4e, %d at or below cut-off", host.max(), host.min(),
             int((host <= relative_cutoff(host, host.size)).sum()))
    return host, V


# --- curves ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CurveTable:
    columns: dict[str, np.ndarray]  # rfw2s.analysis.LOSS_COLUMNS, every replicate's rows
    truncation: dict  # "replicate/m_te" -> the infinite-width series' degree and error bound


def _solve(recipe: SolveRecipe, cached: dict, model, W, teachers, rule, be: Backend, replicate: int, X=None):
    """The exact curves of the student ``W`` of ``replicate`` (trained on the inputs ``X``, a split
    of a dataset's rows, or the population) for ``teachers`` through the recipe's operator, reading
    its ``cached`` operator arrays."""
    from .curves import exact_curves
    from .finite_sample import sample_curves

    pairs = [(t["features"], t["coef"]) for t in teachers]
    if X is not None:
        return sample_curves(model, W, pairs, rule, X, operator=recipe.operator, backend=be, lanczos=recipe.lanczos)
    if recipe.operator == "dual":
        from .dual import dual_curves

        if recipe.split is None:
            return dual_curves(model, W, pairs, rule, backend=be)
        rows = split_of(recipe, model, replicate)
        return dual_curves(model, W, pairs, rule, backend=be, train=rows["student"], test=rows["test"])
    return exact_curves(model, W, pairs, rule, operator=recipe.operator, backend=be, lanczos=recipe.lanczos, **cached)


def _log_convergence(result, tol):
    if result.converged:
        log.info("solver %s: %d Lanczos steps, achieved tolerance %.2e", result.solver, result.steps,
                 result.achieved_tol)
    else:
        log.warning("solver %s: the step budget %d reached only %.2e, NOT the requested %.0e (recorded in "
                    "the achieved_tol column); raise lanczos.max_steps", result.solver, result.steps,
                    result.achieved_tol, tol)


def curve_table(recipe: CurvesRecipe, teachers: dict[int, list[dict]], cached: dict[int, dict], be: Backend,
                check_memory=None) -> CurveTable:
    """Every replicate's curves of one student width: the exact finite-width curves of each
    teacher (``teachers``: :func:`teachers_of`) through the recipe's operator (``cached``:
    replicate -> the operator's arrays, ``spectrum`` or ``kernel``), and the exact infinite-width
    curves where the model has them. ``check_memory(need_bytes, what)`` runs before each solve."""
    from . import analysis
    from .resources import recipe_memory
    from .spectral import rules_of

    rule = rules_of(recipe.learning_rules)
    absent = sorted(set(recipe.replicates) - set(teachers))
    if absent:
        raise ValueError(f"replicates {absent} have no teacher file")
    frames, truncation = [], {}
    for replicate in recipe.replicates:
        model, W = student(recipe, replicate)
        X = None if recipe.samples is None else draw_samples(model, recipe.samples["seed"], recipe.n, replicate)
        if check_memory is not None:
            check_memory(recipe_memory(recipe), f"{recipe.operator} curves at M_ST = {recipe.m_st}")
        with timed(f"{recipe.operator} curves: replicate {replicate}, M_ST={W.shape[0]}, "
                   f"{len(teachers[replicate])} teachers, {rule.grid.size} grid values"
                   + ("" if X is None else f", trained on {len(X)} inputs"), be):
            result = _solve(recipe, cached.get(replicate, {}), model, W, teachers[replicate], rule, be, replicate, X)
        if recipe.lanczos:
            _log_convergence(result, recipe.lanczos["tol"])
        infinite = []
        for t in teachers[replicate]:
            # The infinite-width student trained on the population (not on the sample), by the
            # same filter: a step relative to lam_max as resolved for this draw.
            curve = (model.infinite_width(t["features"], t["coef"], result.rule)
                     if hasattr(model, "infinite_width") and X is None and recipe.split is None else None)
            infinite.append(curve)
            if curve is not None and curve.degree is not None:
                bound = float(np.max(curve.error_bound / curve.losses))
                truncation[f"{replicate}/{t['coef'].shape[0]}"] = {"degree": curve.degree, "relative_error_bound": bound}
                log.info("M_TE=%d infinite width: degree %d, truncation error <= %.1e relative", t["coef"].shape[0],
                         curve.degree, bound)
        table = analysis.curve_columns(replicate, W, teachers[replicate], rule, result, infinite,
                                       floor=getattr(model, "loss_floor", float("nan")),
                                       n=np.inf if X is None else len(X))
        for best in analysis.best_points(table):
            log.info("replicate %d, M_TE=%d, %s: best ratio %.4f at grid value %.4g", *best)
        frames.append(table)
    return CurveTable({name: np.concatenate([f[name] for f in frames]) for name in frames[0]}, truncation)


# --- degrees -----------------------------------------------------------------------------
def degree_table(recipe: DegreesRecipe, teachers: dict[int, list[dict]]):
    """The infinite-width student's loss and the teacher's error in each degree asked for."""
    import pandas as pd

    from . import analysis
    from .spectral import rules_of

    rule = rules_of(recipe.learning_rules)
    models = [build_spec(spec) for spec in recipe.models]
    frames = []
    for replicate in recipe.replicates:
        for model, teacher in zip(models, teachers[replicate]):
            curve = model.infinite_width(teacher["features"], teacher["coef"], rule)
            frames.append(analysis.degree_table(replicate, teacher, rule, curve, recipe.degrees,
                                                remainder=getattr(model, "radial_remainder", 0.0)))
    return pd.concat(frames, ignore_index=True)


# --- validation ----------------------------------------------------------------------------
def validation_tables(recipe: ValidationRecipe, losses, teachers: dict[int, list[dict]], convergence_curves,
                      cached: dict, be: Backend):
    """The three-way comparison: ``(disagreements, sampled and exact curves, convergence)``.
    Sampled-data training uses replicate 0's draw and teachers."""
    from . import validation

    fits = teachers.get(0)
    if fits is None:
        raise ValueError("no replicate 0 teacher file")
    by_size = {int(t["coef"].shape[0]): (t["features"], t["coef"], float(t["loss"])) for t in fits}
    convergence = validation.convergence_table(convergence_curves)
    model, W = student(recipe, 0)
    with timed("sampled-data training", be):
        curves = validation.sampled_comparison(model, W, by_size, recipe.sampled, recipe.seed, backend=be,
                                               operator=recipe.operator, lanczos=recipe.lanczos, **cached)
    return validation.disagreements(losses, curves), curves, convergence
