"""The documentation agrees with the code: the README's commands are the ones CI runs, every
command line the docs show parses (and, where it can run here, runs), every key, column and
test the docs name exists, and nothing points outside the repository."""
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from workflow_helpers import REPO, environment

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Shown but not run by the tests: set-up steps CI runs itself (.ci/run), and what needs
# what this machine lacks (conda, a GPU, a finished run for a report).
NOT_RUN_HERE = ("conda", "--report", "nvidia")


def _text(path):
    return path.read_text()


def documented_commands() -> list[tuple[str, str]]:
    """(file, command) for every shell command in a ```bash block or an inline `snakemake ...`
    of the docs, split at `&&`, continuation lines joined."""
    found = []
    for path in DOCS:
        text = _text(path)
        blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
        lines = [line for block in blocks for line in block.replace("\\\n", " ").splitlines()]
        lines += [" ".join(span.split()) for span in re.findall(r"`((?:snakemake|python -m rfw2s) [^`]+)`", text)]
        for line in lines:
            for command in line.split("&&"):
                command = command.strip()
                if command and not command.startswith("#") and "<" not in command:  # <...>: a template
                    found.append((path.name, command))
    return found


def test_ci_installs_and_tests_exactly_as_the_readme_says():
    readme = _text(REPO / "README.md")
    ci = _text(REPO / ".ci" / "run")
    setup = "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'"
    first, second = re.findall(r"```bash\n(.*?)\n```", readme, re.S)[:2]
    assert first == f"{setup} && snakemake --cores 1 --resources gpu=1"
    assert second == ". .venv/bin/activate && pytest"
    assert setup in ci and re.search(r"^pytest$", ci, re.M)
    assert len(readme.splitlines()) <= 160  # a front page; the reference is in docs/


def test_every_snakemake_command_in_the_docs_parses():
    from snakemake.cli import get_argument_parser

    commands = [(f, c) for f, c in documented_commands() if c.startswith("snakemake")]
    assert len(commands) >= 5
    parser = get_argument_parser()
    for path, command in commands:
        try:
            parser.parse_args(shlex.split(command)[1:])
        except SystemExit:
            pytest.fail(f"{path}: Snakemake does not accept `{command}`")


def test_every_rfw2s_command_in_the_docs_parses():
    from rfw2s.cli import _parser

    commands = [c for _, c in documented_commands() if c.startswith("python -m rfw2s")]
    assert commands
    for command in commands:
        try:
            _parser().parse_args(shlex.split(command)[3:])
        except SystemExit as exc:  # --help exits 0 after printing
            assert exc.code == 0, f"`{command}` does not parse"


@pytest.mark.workflow
def test_every_snakemake_command_in_the_docs_that_can_run_here_runs_as_a_dry_run(tmp_path):
    # On config.yaml (the docs' commands name its experiments), in a temporary folder; a
    # command naming another config file gets config.yaml under that name.
    ran = 0
    for path, command in documented_commands():
        if not command.startswith("snakemake") or any(word in command for word in NOT_RUN_HERE):
            continue
        args = shlex.split(command)[1:]
        if "--configfile" in args:  # a file of the repository, or a user's own (config.yaml then)
            name = args[args.index("--configfile") + 1]
            if not (REPO / name).is_file():
                (tmp_path / name).write_text(_text(REPO / "config.yaml"))
            args[args.index("--configfile") + 1] = str(REPO / name if (REPO / name).is_file() else tmp_path / name)
        else:
            args += ["--configfile", str(REPO / "config.yaml")]
        profile = [a for a in args if a.startswith("workflow/")]
        args = [str(REPO / a) if a in profile else a for a in args]
        proc = subprocess.run(["snakemake", *args, "--dry-run", "-s", str(REPO / "Snakefile"), "--directory",
                               str(tmp_path)], capture_output=True, text=True, env=environment(), timeout=300,
                              executable=str(Path(__import__("sys").executable).parent / "snakemake"))
        assert proc.returncode == 0, f"{path}: `{command}` fails:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        ran += 1
    assert ran >= 4


def test_the_tests_the_docs_cite_exist():
    tests = "".join(_text(p) for p in (REPO / "tests").glob("test_*.py"))
    for path in DOCS:
        for name in re.findall(r"\b(test_\w+)\b(?!\.py)", _text(path)):
            assert f"def {name}(" in tests, f"{path.name} cites {name}, which is no test"


def test_the_configuration_reference_documents_every_key_with_its_default():
    import yaml

    from rfw2s.config import compose_schema

    schema = compose_schema(yaml.safe_load(_text(REPO / "workflow" / "schemas" / "config.schema.yaml")))
    doc = _text(REPO / "docs" / "configuration.md")
    rows: dict[str, list[str]] = {}  # a model parameter may have a row under each model
    for m in re.finditer(r"^\| `([\w.]+)` \|([^|]*)\|", doc, re.M):
        rows.setdefault(m.group(1), []).append(m.group(2).strip().strip("`"))

    def paths(properties, prefix=""):
        """Every key (a block with keys of its own too, unless a default fills it)."""
        for key, sub in properties.items():
            path = prefix + key
            if sub and ("properties" not in sub or "default" not in sub):
                yield path, sub
            if "properties" in sub:
                yield from paths(sub["properties"], path + ".")

    def check(properties):
        for path, sub in paths(properties):
            assert path in rows, f"docs/configuration.md has no row for `{path}`"
            default = sub.get("default")
            if default not in (None, {}, []):
                if isinstance(default, dict):
                    expected = {yaml.safe_dump(default, default_flow_style=True).strip()}
                else:
                    expected = {str(default).lower(), repr(float(default)) if isinstance(default, float) else ""}
                shown = set(rows[path])
                numbers = {float(v) for v in shown if re.fullmatch(r"[-+.\de]+", v)}
                assert shown & expected or (isinstance(default, (int, float)) and float(default) in numbers), (
                    path, shown, default)

    top = schema["properties"]
    check({k: v for k, v in top.items() if k != "experiments"})
    experiment = top["experiments"]["additionalProperties"]
    check(experiment["properties"])
    for rule in experiment["allOf"]:
        check(rule["then"]["properties"])


def test_the_artifacts_reference_documents_every_column():
    from rfw2s import analysis, validation

    doc = _text(REPO / "docs" / "artifacts.md")
    columns = (analysis.LOSS_COLUMNS + analysis.SUMMARY_COLUMNS + analysis.FIT_COLUMNS + validation.CURVE_COLUMNS
               + validation.CONVERGENCE_COLUMNS + validation.DISAGREEMENT_COLUMNS)
    for column in columns:
        assert f"`{column}`" in doc, f"docs/artifacts.md does not document the column {column}"
    for key in ("versions", "backend", "device", "recipe", "infinite_width_truncation", "curves"):
        assert f"`{key}`" in doc, key


def test_no_file_of_the_project_points_outside_the_repository():
    shared, spec = "../" + "shared", "SP" + "EC"
    proc = subprocess.run(["git", "grep", "-n", "-I", "-e", shared, "-e", spec, "--", "."], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.stdout == "", proc.stdout


def test_conda_environments_pin_the_versions_the_tests_run_with():
    import matplotlib
    import numpy
    import pandas
    import pyarrow
    import sklearn
    import tomllib
    import yaml

    tested = {"numpy": numpy.__version__, "pandas": pandas.__version__, "pyarrow": pyarrow.__version__,
              "matplotlib-base": matplotlib.__version__, "scikit-learn": sklearn.__version__}
    project = tomllib.loads(_text(REPO / "pyproject.toml"))["project"]["dependencies"]
    lower = {re.match(r"[a-z-]+", d).group(0): re.search(r">=([\d.]+)", d).group(1) for d in project}
    lower["matplotlib-base"] = lower.pop("matplotlib")
    for name in ("rfw2s.yaml", "rfw2s-gpu.yaml"):
        env = yaml.safe_load(_text(REPO / "envs" / name))
        pins = dict(dep.split("=", 1) for dep in env["dependencies"] if isinstance(dep, str))
        for package, version in tested.items():
            assert version.startswith(pins[package] + "."), (name, package, pins[package], version)
            assert pins[package] == lower[package], (name, package, "differs from pyproject.toml")
    gpu = dict(dep.split("=", 1) for dep in yaml.safe_load(_text(REPO / "envs" / "rfw2s-gpu.yaml"))["dependencies"])
    assert "cupy" in gpu and gpu["cuda-version"] == "12"
    # Every rule names an environment of common.smk: the GPU rules the one of the plan's target
    # (GPU_ENV: the CuPy environment on a CuPy target), every other rule the CPU one.
    from rfw2s.plan import GPU_STEPS

    rules = "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    blocks = re.findall(r"^rule (\w+):\n(.*?)(?=^rule |\Z)", rules, re.M | re.S)
    envs = {name: re.search(r"conda:\n\s+(\w+)", body).group(1) for name, body in blocks}
    assert envs == {name: "GPU_ENV" if name in GPU_STEPS else "CPU_ENV" for name, _ in blocks}
