# Config validation, the plan's target and the plan, before any job runs, and what each rule
# reads from the plan: a step's recipe (its one description), named inputs and resources.
# Every rule's params carry only the part of the config its numbers depend on.
import json
import os
import shlex
import sys
from pathlib import Path

import yaml

# The workflow always runs the rfw2s source that sits beside it, here and in every
# job (jobs inherit the environment; a cluster job re-reads this file). The rest of
# PYTHONPATH stays, and a job's `python3` is the one running Snakemake (first on PATH):
# a job must import what this process found. A conda environment's activation
# (--software-deployment-method conda) still puts its own first.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        [SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != SRC]
    ),
    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
)
import rfw2s.config  # noqa: E402
import rfw2s.models  # noqa: E402
import rfw2s.paths  # noqa: E402
import rfw2s.plan  # noqa: E402
import rfw2s.target  # noqa: E402

# Models defined outside the package (config key model_plugins) register on import,
# here and, through the environment, in every job.
PLUGINS = [str(Path(p).resolve()) for p in config.get("model_plugins") or []]
try:
    rfw2s.models.load_plugins(PLUGINS)
except FileNotFoundError as exc:
    raise rfw2s.config.ConfigError(f"config key 'model_plugins': {exc}") from None
os.environ.update({rfw2s.models.PLUGINS_VARIABLE: os.pathsep.join(PLUGINS)})

if workflow.is_main_process:  # a dataset is read here, and its spec handed to the job-side processes
    rfw2s.models.empirical.forget_handed_down()
with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as fh:
    rfw2s.config.validate(config, yaml.safe_load(fh))
# Where the GPU rules compute: resolved by the process the user started (the only one that may
# look for a GPU) and handed to every job through the environment; a job-side process reads it.
try:
    TARGET = rfw2s.target.for_this_process(config, main=workflow.is_main_process)
except rfw2s.target.TargetError as exc:
    raise rfw2s.config.ConfigError(str(exc)) from None
for _name in rfw2s.config.drop_gpu_only(config, TARGET.backend):
    if workflow.is_main_process:
        logger.warning(
            f"experiment {_name} skipped: it is marked gpu_only and the plan's target is NumPy; run it "
            "anyway with --config run_gpu_only_on_cpu=true, or plan for GPUs (backend: cupy, gpu_memory_gb)"
        )
PLAN = rfw2s.plan.Plan(config, TARGET)
if workflow.is_main_process:  # a dataset's rows, named by their content, for the jobs to read
    rfw2s.models.empirical.store_sources(config["experiments"].values())
    rfw2s.models.empirical.hand_down()
EXPERIMENTS = PLAN.experiments
# Conda environments (--software-deployment-method conda), relative to rules/: the GPU one only
# for the GPU rules, and only when they compute on CuPy.
CPU_ENV = "../../envs/rfw2s.yaml"
GPU_ENV = "../../envs/rfw2s-gpu.yaml" if TARGET.backend == "cupy" else CPU_ENV
CACHE = rfw2s.paths.CACHE
RESULTS = f"{rfw2s.paths.RESULTS}/{{experiment}}"


wildcard_constraints:
    experiment="|".join(EXPERIMENTS) or "(?!)",
    key=rfw2s.paths.KEY_PATTERN,
    replicate=r"\d+",


def recipe(kind):
    """Params: the recipe of the shared step named by the `key` wildcard."""
    return lambda wc: PLAN.step(kind, wc.key).recipe.to_json()


def step_memory_mb(kind):
    return lambda wc: PLAN.memory_mb(PLAN.step(kind, wc.key).recipe)


def step_runtime_min(kind):
    return lambda wc: PLAN.runtime_min(PLAN.step(kind, wc.key).recipe)


def named_files(files: dict) -> str:
    """A job's named input files as `NAME=PATH` words (rfw2s.cli reads them by name)."""
    return " ".join(shlex.quote(f"{name}={path}") for name, path in files.items())


def curve_operator_files(wc):
    step = PLAN.step("curves", wc.key)
    return named_files(rfw2s.paths.operator_files(step.recipe, step.recipe.replicates))


def validation_operator_files(wc):
    return named_files(rfw2s.paths.operator_files(EXPERIMENTS[wc.experiment].validation, [0]))


def tables_recipe(wc):
    return EXPERIMENTS[wc.experiment].tables_recipe.to_json()


def validation_recipe(wc):
    return EXPERIMENTS[wc.experiment].validation.to_json()


def degrees_recipe(wc):
    return EXPERIMENTS[wc.experiment].degrees.to_json()


def shown_values(wc):
    """The swept values Figures 2(a)/(b) show: the widest student, the largest sample, the first rule."""
    return json.dumps(EXPERIMENTS[wc.experiment].shown, sort_keys=True)


def sweep_axis(wc):
    return EXPERIMENTS[wc.experiment].sweep


def validation_memory_mb(wc):
    return PLAN.memory_mb(EXPERIMENTS[wc.experiment].validation)


def validation_runtime_min(wc):
    return PLAN.runtime_min(EXPERIMENTS[wc.experiment].validation)


def classification_experiments():
    """Wildcard constraint: the experiments whose target has classes (accuracies)."""
    return "|".join(n for n, e in EXPERIMENTS.items() if e.classification) or "(?!)"


def sweeping_experiments():
    """Wildcard constraint: the experiments over a list of student widths or sample sizes."""
    return "|".join(n for n, e in EXPERIMENTS.items() if e.sweep) or "(?!)"


def reporting_only() -> bool:
    """`snakemake --report FILE` (without --report-after-run): a report of what exists, not a run."""
    args = sys.argv[1:]
    return (
        workflow.is_main_process
        and any(a == "--report" or a.startswith("--report=") for a in args)
        and "--report-after-run" not in args
    )


def finished_experiments() -> list:
    """The experiments whose every final file exists (a report holds these; it names the others)."""
    finished = [n for n in EXPERIMENTS if all(os.path.exists(p) for p in rfw2s.paths.outputs(PLAN, [n]))]
    if not finished:
        raise rfw2s.config.ConfigError(
            "no experiment of this config has finished, so there is nothing to report: run it first "
            "(snakemake --cores 1 --resources gpu=1, or one experiment: snakemake NAME --cores 1 --resources gpu=1)"
        )
    for name in EXPERIMENTS:
        if name not in finished:
            logger.warning(
                f"report: experiment {name} has not finished and is left out; run it with "
                f"snakemake {name} --cores 1 --resources gpu=1"
            )
    return finished


# The experiments the default target asks for: all of them, or for a report after a partial run, those finished.
REPORTED = finished_experiments() if reporting_only() else list(EXPERIMENTS)
