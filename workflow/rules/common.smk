# Config validation (before any job runs), the plan of students and curves, and the
# helpers that hand each rule only the part of the config it depends on: a plot setting
# never re-solves a model.
import json
import os
import sys
import tempfile
from pathlib import Path

import yaml
from snakemake.utils import validate

# The workflow always runs the rfw2s source that sits beside it, here and in every
# job (jobs inherit the environment; a cluster job re-reads this file). Jobs need
# nothing else on PYTHONPATH: their libraries come from the environment's site-packages.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=SRC)
import rfw2s.config  # noqa: E402
import rfw2s.models  # noqa: E402
from rfw2s.backend import BackendError, resolve  # noqa: E402
from rfw2s.solve import SOLVER_VERSION  # noqa: E402

# Models defined outside the package (config key model_plugins) register on import,
# here and, through the environment, in every job.
PLUGINS = [str(Path(p).resolve()) for p in config.get("model_plugins", [])]
rfw2s.models.load_plugins(PLUGINS)
os.environ.update({rfw2s.models.PLUGINS_VARIABLE: os.pathsep.join(PLUGINS)})

rfw2s.config.normalize(config)
with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as fh:
    _schema = rfw2s.config.compose_schema(yaml.safe_load(fh))
with tempfile.TemporaryDirectory() as _tmp:
    _schema_path = Path(_tmp) / "config.schema.yaml"
    _schema_path.write_text(yaml.safe_dump(_schema))
    validate(config, str(_schema_path))
try:
    BACKEND = resolve(config["backend"]).name
except BackendError as exc:
    raise ValueError(f"config key 'backend': {exc}") from None
rfw2s.config.check(config, backend=BACKEND)

EXPERIMENTS = config["experiments"]
RESULTS = "results/{experiment}"
CACHE = "results/cache/{student}"
PLANS = {name: rfw2s.config.plan(exp) for name, exp in EXPERIMENTS.items()}
STUDENTS = {c.student.key: c.student for curves in PLANS.values() for c in curves}
for _name, _exp in EXPERIMENTS.items():  # validation students join the shared cache
    if "validation" in _exp:
        for _m_st in _exp["validation"]["convergence_m_st"] + [_exp["validation"]["sampled"]["m_st"]]:
            for _m_te in _exp["m_te"]:
                _s = rfw2s.config.student(_exp, _m_te, _m_st)
                STUDENTS[_s.key] = _s
ABLATIONS = [n for n, e in EXPERIMENTS.items() if rfw2s.config.is_ablation(e)]
SINGLE_WIDTH = [n for n in EXPERIMENTS if n not in ABLATIONS]


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    student="|".join(STUDENTS),
    replicate=r"\d+",
    m_te=r"\d+",
    m_st=r"\d+",


def experiment_value(key):
    return lambda wc: EXPERIMENTS[wc.experiment][key]


def student_value(key):
    return lambda wc: getattr(STUDENTS[wc.student], key)


def student_model_json(wc):
    return rfw2s.config.spec_json(STUDENTS[wc.student].spec)


def teacher_model_json(wc):
    return rfw2s.config.spec_json(rfw2s.config.model_spec(EXPERIMENTS[wc.experiment], int(wc.m_te)))


def validation_model_json(wc):
    # Validation requires a model that does not change with the teacher size (checked).
    exp = EXPERIMENTS[wc.experiment]
    return rfw2s.config.spec_json(rfw2s.config.model_spec(exp, exp["m_te"][0]))


def cached(name):
    """Input function: a cached artifact of the student behind a curve job."""

    def path(wc):
        s = rfw2s.config.student(EXPERIMENTS[wc.experiment], int(wc.m_te), int(wc.m_st))
        return f"results/cache/{s.key}/{name}_r{wc.replicate}.npy"

    return path


def curve_files(experiment, widths=None):
    """The curve tables of an experiment's plan, or of its teachers at other ``widths``."""
    exp = EXPERIMENTS[experiment]
    pairs = [(c.m_te, c.m_st) for c in PLANS[experiment]] if widths is None else [
        (m_te, m_st) for m_st in widths for m_te in exp["m_te"]
    ]
    return [
        f"results/{experiment}/curves/m{m_te}_s{m_st}_r{r}.parquet"
        for m_te, m_st in pairs
        for r in range(exp["replicates"])
    ]


def teacher_files(experiment):
    exp = EXPERIMENTS[experiment]
    return [
        f"results/{experiment}/teachers/m{m_te}_r{r}.npz"
        for m_te in exp["m_te"]
        for r in range(exp["replicates"])
    ]


def all_outputs():
    out = []
    for name, exp in EXPERIMENTS.items():
        validated = ["validation"] if "validation" in exp else []
        figures = ["ablation_heatmap", "ablation_exponent"] if name in ABLATIONS else ["fig2a", "fig2b"]
        out += [f"results/{name}/{t}.parquet" for t in ["losses", "summary", "fit"] + validated]
        out += [f"results/{name}/figures/{f}.{ext}" for f in figures + validated for ext in ("png", "pdf")]
    return out
