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
