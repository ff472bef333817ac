# Config validation and the plan, before any job runs, and what each rule reads from the
# plan: a step's recipe (its one description, which also names its files), inputs and
# resources. Every rule's params carry only the part of the config its numbers depend on.
import json
import os
import sys
from pathlib import Path

import yaml

# The workflow always runs the rfw2s source that sits beside it, here and in every
# job (jobs inherit the environment; a cluster job re-reads this file). The rest of
# PYTHONPATH stays, and a job's `python3` is the one running Snakemake (first on PATH):
# a job must import what this process found (CuPy, for the backend resolved below). A
# conda environment's activation (--software-deployment-method conda) still puts its own first.
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
import rfw2s.plan  # noqa: E402
from rfw2s.backend import BackendError, resolve  # noqa: E402

# Models defined outside the package (config key model_plugins) register on import,
# here and, through the environment, in every job.
PLUGINS = [str(Path(p).resolve()) for p in config.get("model_plugins") or []]
try:
    rfw2s.models.load_plugins(PLUGINS)
except FileNotFoundError as exc:
    raise rfw2s.config.ConfigError(f"config key 'model_plugins': {exc}") from None
os.environ.update({rfw2s.models.PLUGINS_VARIABLE: os.pathsep.join(PLUGINS)})

with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as fh:
    rfw2s.config.validate(config, yaml.safe_load(fh))
try:
    BACKEND = resolve(config["backend"]).name
except BackendError as exc:
    raise rfw2s.config.ConfigError(f"config key 'backend': {exc}") from None
for _name in rfw2s.config.drop_gpu_only(config, BACKEND):
    logger.warning(
        f"experiment {_name} skipped: it is marked gpu_only and no GPU is usable here; run it "
        "anyway with --config run_gpu_only_on_cpu=true"
    )
PLAN = rfw2s.plan.Plan(config, backend=BACKEND)
EXPERIMENTS = PLAN.experiments
# Conda environment of every rule (--software-deployment-method conda), relative to rules/.
CONDA_ENV = "../../envs/rfw2s-gpu.yaml" if BACKEND == "cupy" else "../../envs/rfw2s.yaml"
CACHE = rfw2s.plan.CACHE
RESULTS = f"{rfw2s.plan.RESULTS}/{{experiment}}"


wildcard_constraints:
    experiment="|".join(EXPERIMENTS) or "(?!)",
    key=rfw2s.plan.KEY_PATTERN,
    replicate=r"\d+",


def recipe(kind):
    """Params: the recipe of the shared step named by the `key` wildcard."""
    return lambda wc: PLAN.step(kind, wc.key).recipe_json()


def step_memory_mb(kind):
    return lambda wc: PLAN.memory_mb(kind, PLAN.step(kind, wc.key).recipe)


def step_runtime_min(kind):
    return lambda wc: PLAN.runtime_min(kind, PLAN.step(kind, wc.key).recipe)


def tables_recipe(wc):
    return json.dumps(PLAN.tables_recipe(wc.experiment), sort_keys=True)


def validation_recipe(wc):
    return json.dumps(EXPERIMENTS[wc.experiment].validation, sort_keys=True)


def degrees_recipe(wc):
    return json.dumps(EXPERIMENTS[wc.experiment].degrees, sort_keys=True)


def shown_values(wc):
    """The swept values Figures 2(a)/(b) show: the widest student, the largest sample, the first rule."""
    return json.dumps(EXPERIMENTS[wc.experiment].shown, sort_keys=True)


def sweep_axis(wc):
    return EXPERIMENTS[wc.experiment].sweep


def validation_memory_mb(wc):
    return PLAN.memory_mb("validation", EXPERIMENTS[wc.experiment].validation)


def validation_runtime_min(wc):
    return PLAN.runtime_min("validation", EXPERIMENTS[wc.experiment].validation)


def sweeping_experiments():
    """Wildcard constraint: the experiments over a list of student widths or sample sizes."""
    return "|".join(n for n, e in EXPERIMENTS.items() if e.sweep) or "(?!)"
