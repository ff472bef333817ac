"""The README's commands are the ones CI runs."""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'"
    assert f"{setup} && snakemake --cores 1 --resources gpu=1" in readme
    assert setup in ci
    assert ". .venv/bin/activate && pytest" in readme and "\npytest\n" in ci


def test_conda_environments_pin_the_versions_the_tests_run_with():
    import re

    import matplotlib
    import numpy
    import pandas
    import pyarrow
    import yaml

    import tomllib

    tested = {"numpy": numpy.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
              "matplotlib-base": matplotlib.__version__}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    lower = {re.match(r"[a-z]+", d).group(0): re.search(r">=([\d.]+)", d).group(1) for d in project}
    lower["matplotlib-base"] = lower.pop("matplotlib")
    for name in ("rfw2s.yaml", "rfw2s-gpu.yaml"):
        env = yaml.safe_load((REPO / "envs" / name).read_text())
        pins = dict(dep.split("=", 1) for dep in env["dependencies"] if isinstance(dep, str))
        for package, version in tested.items():
            assert version.startswith(pins[package] + "."), (name, package, pins[package], version)
            assert pins[package] == lower[package], (name, package, "differs from pyproject.toml")
    assert "cupy" in yaml.safe_load((REPO / "envs" / "rfw2s-gpu.yaml").read_text())["dependencies"][-2]
    # Every rule runs in the environment chosen in common.smk.
    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    assert rules.count("conda:\n        CONDA_ENV") == len(re.findall(r"^rule \w+:", rules, re.M))
