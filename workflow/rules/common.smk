# Config validation (before any job runs), and the helpers that hand each rule only
# the part of the config it depends on: a plot setting never re-solves a model.
import json
import sys
from pathlib import Path

from snakemake.utils import validate

SRC = Path(workflow.basedir) / "src"
# The workflow always runs the rfw2s source that sits beside it.
sys.path.insert(0, str(SRC))
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
RFW2S = f"PYTHONPATH={SRC}${{PYTHONPATH:+:$PYTHONPATH}} python -m rfw2s"
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


def all_outputs():
    return expand(
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
