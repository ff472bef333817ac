"""Run a plan's steps in this process (``python -m rfw2s <step>`` through ``rfw2s.cli.main``),
as Snakemake would run them as jobs, with every file under a working folder."""
from pathlib import Path

import pandas as pd
import yaml

from rfw2s import cli, paths
from rfw2s.config import validate
from rfw2s.plan import Plan
from rfw2s.target import Target

REPO = Path(__file__).resolve().parents[1]
SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def target_of(backend: str = "numpy", memory: int = 1 << 34) -> Target:
    """A resolved target: solvers on ``backend`` with ``memory`` bytes (the GPU's on cupy)."""
    if backend == "cupy":
        return Target("cupy", memory, 1 << 34)
    return Target("numpy", None, memory)


def plan_of(experiments: dict, backend: str = "numpy", memory: int = 1 << 34, **settings) -> Plan:
    """The plan of a config with these experiments and top-level settings (validated, defaults
    filled), for solvers on ``backend`` with ``memory`` bytes."""
    config = validate({"backend": backend, **settings, "experiments": experiments}, SCHEMA)
    return Plan(config, target_of(backend, memory))


def run_curves(plan: Plan, key: str, workdir: Path) -> pd.DataFrame:
    """The curve step ``key`` and every step it reads (teachers, kernel, eigh), once each."""
    recipe = plan.step("curves", key).recipe

    def at(path):
        return str(Path(workdir) / path)

    for r in recipe.replicates:
        teachers = at(paths.teacher_file(recipe.teachers, r))
        if not Path(teachers).exists():
            cli.main(["teachers", "--recipe", plan.step("teachers", recipe.teachers).recipe.to_json(),
                      "--replicate", str(r), "--out", teachers])
        if recipe.kernel and not Path(at(paths.kernel_file(recipe.kernel, r))).exists():
            cli.main(["kernel", "--recipe", plan.step("kernel", recipe.kernel).recipe.to_json(), "--replicate", str(r),
                      "--out", at(paths.kernel_file(recipe.kernel, r))])
        if recipe.eigh:
            files = {k: at(v) for k, v in paths.eigh_files(recipe.eigh, r).items()}
            cli.main(["eigh", "--recipe", plan.step("eigh", recipe.eigh).recipe.to_json(),
                      "--gram", at(paths.kernel_file(recipe.kernel, r)),
                      "--out-eigvals", files["eigvals"], "--out-eigvecs", files["eigvecs"]])
    inputs = paths.curve_inputs(plan, key)
    named = [f"{name}={at(path)}" for name, path in paths.operator_files(recipe, recipe.replicates).items()]
    out = at(paths.curves_file(key))
    cli.main(["curves", "--recipe", recipe.to_json(), "--teachers", *map(at, inputs["teachers"]),
              "--operator-files", *named, "--out", out])
    return pd.read_parquet(out)
