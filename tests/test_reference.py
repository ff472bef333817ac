"""A refactor changes no number: the README's pipeline command on config.yaml gives the
reference tables of tests/reference/ (made by the code before the architecture rework) to
1e-12 relative. (The tiny config's are checked in test_workflow.py, on its shared run.)"""
import pytest
import yaml

from reference_tables import REFERENCE, differences
from workflow_helpers import REPO, snakemake

pytestmark = pytest.mark.workflow


def test_the_default_config_gives_the_reference_tables(tmp_path):
    # The README's `snakemake --cores 1 --resources gpu=1` on config.yaml, in a temporary
    # folder, for the tables the reference holds (its figures and validation are not numbers
    # of the reference; tests/test_docs.py dry-runs the whole command).
    experiments = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]
    referenced = sorted(p.name for p in (REFERENCE / "default").iterdir())
    assert set(referenced) <= set(experiments)
    snakemake(tmp_path, REPO / "config.yaml", *[f"results/{name}/fit.parquet" for name in referenced], cores=1)
    for name in referenced:
        assert differences(tmp_path / "results", "default", name) == [], name
