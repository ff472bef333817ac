# Config validation (before any job runs), and the helpers that hand each rule only
# the part of the config it depends on: a plot setting never re-solves a model.
import json
import os
import sys
from pathlib import Path

from snakemake.utils import validate

# The workflow always runs the rfw2s source that sits beside it, here and in every
# job (jobs inherit the environment; a cluster job re-reads this file). Jobs need
# nothing else on PYTHONPATH: their libraries come from the environment's site-packages.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=SRC)
import rfw2s.config  # noqa: E402
from rfw2s.backend import BackendError, resolve  # noqa: E402
from rfw2s.solve import SOLVER_VERSION  # noqa: E402

rfw2s.config.normalize(config)
validate(config, "../schemas/config.schema.yaml")
rfw2s.config.check(config)
if config["backend"] == "cupy":
    try:
        resolve("cupy")
    except BackendError as exc:
        raise ValueError(f"config key 'backend': {exc}") from None

EXPERIMENTS = config["experiments"]
RESULTS = "results/{experiment}"


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    replicate=r"\d+",
    m_te=r"\d+",


def experiment_value(key):
    return lambda wc: EXPERIMENTS[wc.experiment][key]


def model_json(wc):
    return json.dumps(rfw2s.config.model_spec(EXPERIMENTS[wc.experiment]), sort_keys=True)


def curves_of(wc):
    exp = EXPERIMENTS[wc.experiment]
    return expand(
        f"{RESULTS}/curves/m{{m_te}}_r{{replicate}}.parquet",
        experiment=wc.experiment,
        m_te=exp["m_te"],
        replicate=range(exp["replicates"]),
    )


def teachers_of(wc):
    exp = EXPERIMENTS[wc.experiment]
    return expand(
        f"{RESULTS}/teachers/m{{m_te}}_r{{replicate}}.npz",
        experiment=wc.experiment,
        m_te=exp["m_te"],
        replicate=range(exp["replicates"]),
    )


def all_outputs():
    validated = [name for name, exp in EXPERIMENTS.items() if "validation" in exp]
    return expand(
        [
            f"{RESULTS}/validation.parquet",
            f"{RESULTS}/figures/validation.png",
            f"{RESULTS}/figures/validation.pdf",
        ],
        experiment=validated,
    ) + expand(
        [
            f"{RESULTS}/losses.parquet",
            f"{RESULTS}/summary.parquet",
            f"{RESULTS}/fit.parquet",
            f"{RESULTS}/figures/fig2a.png",
            f"{RESULTS}/figures/fig2a.pdf",
            f"{RESULTS}/figures/fig2b.png",
            f"{RESULTS}/figures/fig2b.pdf",
        ],
        experiment=list(EXPERIMENTS),
    )
