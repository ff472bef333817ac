"""Run a plan's steps in this process (``python -m rfw2s <step>`` through ``rfw2s.cli.main``),
as Snakemake would run them as jobs, with every file under a working folder."""
from pathlib import Path

import pandas as pd
import yaml

from rfw2s import cli
from rfw2s.config import validate
from rfw2s.plan import Plan

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def plan_of(experiments: dict, backend: str = "numpy", memory: int = 1 << 34, **settings) -> Plan:
    """The plan of a config with these experiments and top-level settings (validated, defaults
    filled), for solvers on ``backend`` with ``memory`` bytes."""
    config = validate({"backend": backend, **settings, "experiments": experiments}, SCHEMA)
    return Plan(config, backend=backend, memory=memory)


def run_curves(plan: Plan, key: str, workdir: Path) -> pd.DataFrame:
    """The curve step ``key`` and every step it reads (teachers, kernel, eigh), once each."""
    recipe = plan.step("curves", key).recipe

    def at(path):
        return str(Path(workdir) / path)

    for r in recipe["replicates"]:
        teachers = at(plan.teacher_file(recipe["teachers"], r))
        if not Path(teachers).exists():
            cli.main(["teachers", "--recipe", plan.step("teachers", recipe["teachers"]).recipe_json(),
                      "--replicate", str(r), "--out", teachers])
        if recipe.get("kernel") and not Path(at(plan.kernel_file(recipe["kernel"], r))).exists():
            cli.main(["kernel", "--recipe", plan.step("kernel", recipe["kernel"]).recipe_json(), "--replicate", str(r),
                      "--out", at(plan.kernel_file(recipe["kernel"], r))])
        if recipe.get("eigh"):
            files = {k: at(v) for k, v in plan.eigh_files(recipe["eigh"], r).items()}
            cli.main(["eigh", "--recipe", plan.step("eigh", recipe["eigh"]).recipe_json(),
                      "--gram", at(plan.kernel_file(recipe["kernel"], r)),
                      "--out-eigvals", files["eigvals"], "--out-eigvecs", files["eigvecs"]])
    inputs = plan.curve_inputs(key)
    out = at(plan.curves_file(key))
    cli.main(["curves", "--recipe", plan.step("curves", key).recipe_json(), "--teachers",
              *map(at, inputs["teachers"]), "--operator-files", *map(at, inputs["operator"]), "--out", out])
    return pd.read_parquet(out)
