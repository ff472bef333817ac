"""Where every step's files go, and what each rule reads: the one home of the pipeline's paths.

Shared steps live in ``results/cache/<step>/<key>/`` (the key names what determines them,
:mod:`rfw2s.recipes`), experiments' tables and figures in ``results/<experiment>/``. Paths are
relative to the working folder; a job receives the ones it reads as arguments, named.
"""
from __future__ import annotations

from .operators import OPERATORS

RESULTS = "results"
CACHE = f"{RESULTS}/cache"
# Folders under results/ that the pipeline owns: no experiment may be named like one.
RESERVED_NAMES = ("cache",)
KEY_PATTERN = r"[A-Za-z0-9._-]+-[0-9a-f]{12}"


def folder(kind: str, key: str) -> str:
    return f"{CACHE}/{kind}/{key}"


def teacher_file(key: str, replicate: int) -> str:
    return f"{folder('teachers', key)}/r{replicate}.npz"


def kernel_file(key: str, replicate: int) -> str:
    return f"{folder('kernel', key)}/gram_r{replicate}.npy"


def eigh_files(key: str, replicate: int) -> dict[str, str]:
    return {name: f"{folder('eigh', key)}/{name}_r{replicate}.npy" for name in OPERATORS["eigh"].reads}


def curves_file(key: str) -> str:
    return f"{folder('curves', key)}/curves.parquet"


def data_file(key: str) -> str:
    """A dataset's rows, named by their content (rfw2s.datasets)."""
    return f"{folder('data', key)}/rows.npz"


def experiment_folder(name: str) -> str:
    return f"{RESULTS}/{name}"


def operator_file_name(name: str, replicate: int) -> str:
    """How a job is handed one of its cached operator files: ``gram_r0``, ``eigvecs_r2``."""
    return f"{name}_r{replicate}"


def operator_files(recipe, replicates) -> dict[str, str]:
    """The cached files a solve of ``recipe`` (:class:`rfw2s.recipes.SolveRecipe`) reads for each
    of ``replicates``, by :func:`operator_file_name`."""
    files = {}
    for r in replicates:
        if recipe.operator == "cached":
            files[operator_file_name("gram", r)] = kernel_file(recipe.kernel, r)
        elif recipe.operator == "eigh":
            files.update({operator_file_name(name, r): path for name, path in eigh_files(recipe.eigh, r).items()})
    return files


def by_replicate(operator: str, named: dict[str, str], replicates) -> dict[int, dict[str, str]]:
    """``replicate -> {name: path}`` from the files a job was handed by name, checked to be
    exactly those ``operator`` reads for ``replicates``."""
    names = OPERATORS[operator].reads
    want = {operator_file_name(n, r) for r in replicates for n in names}
    if set(named) != want:
        raise ValueError(f"operator {operator!r} reads {', '.join(names) or 'no cached file'} for each of the "
                         f"replicates {list(replicates)}: files named {sorted(want)}; got {sorted(named)}")
    return {r: {n: named[operator_file_name(n, r)] for n in names} for r in replicates}


# --- what each rule reads, from the plan (rfw2s.plan.Plan) -----------------------------------
def data_inputs(model: dict) -> dict:
    """The rows a step on ``model`` (a concrete model's spec) reads: a dataset's, else none."""
    return {"data": data_file(model["data"])} if model["name"] == "dataset" else {}


def teacher_inputs(plan, key: str) -> dict:
    return data_inputs(plan.step("teachers", key).recipe.models[0])


def kernel_inputs(plan, key: str) -> dict:
    return data_inputs(plan.step("kernel", key).recipe.model)


def curve_inputs(plan, key: str) -> dict:
    """The teacher files (one per replicate), the named operator files and the dataset's rows
    (if any) of a curve step."""
    recipe = plan.step("curves", key).recipe
    return {"teachers": [teacher_file(recipe.teachers, r) for r in recipe.replicates],
            **operator_files(recipe, recipe.replicates), **data_inputs(recipe.model)}


def eigh_input(plan, key: str, replicate: int) -> str:
    return kernel_file(plan.step("eigh", key).recipe.kernel, replicate)


def experiment_curves(plan, name: str) -> list[str]:
    return [curves_file(k) for k in plan.experiments[name].curves]


def validation_inputs(plan, name: str) -> dict:
    exp = plan.experiments[name]
    return {"losses": f"{experiment_folder(name)}/losses.parquet", "teachers": [teacher_file(exp.teachers, 0)],
            "convergence": [curves_file(k) for k in exp.convergence], **operator_files(exp.validation, [0])}


def degree_inputs(plan, name: str) -> list[str]:
    exp = plan.experiments[name]
    return [teacher_file(exp.teachers, r) for r in exp.degrees.replicates]


def outputs(plan, names=None) -> list[str]:
    """Every final file of the experiments ``names`` (default: all)."""
    out = []
    for name in plan.experiments if names is None else names:
        exp = plan.experiments[name]
        out += [f"{experiment_folder(name)}/{table}.parquet" for table in exp.tables]
        out += [f"{experiment_folder(name)}/figures/{f}.{ext}" for f in exp.figures for ext in ("png", "pdf")]
    return out
