"""A refactor changes no number: the README's pipeline command on config.yaml gives the
reference tables of tests/reference/ (made by the code before the architecture rework) to
1e-12 relative. (The tiny config's are checked in test_workflow.py, on its shared run.)"""
import pytest
import yaml

from reference_tables import REFERENCE, differences
from workflow_helpers import REPO, snakemake

pytestmark = pytest.mark.workflow


def test_the_default_config_gives_the_reference_tables(tmp_path):
    # `snakemake --cores 1 --resources gpu=1` on config.yaml, as the README's first command
    # runs it, in a temporary folder (GPU-only experiments are skipped without a GPU).
    proc = snakemake(tmp_path, REPO / "config.yaml", cores=1)
    experiments = yaml.safe_load((REPO / "config.yaml").read_text())["experiments"]
    referenced = sorted(p.name for p in (REFERENCE / "default").iterdir())
    assert set(referenced) <= set(experiments)
    for name in referenced:
        assert differences(tmp_path / "results", "default", name) == [], name
    for name, exp in experiments.items():
        ran = (tmp_path / "results" / name / "summary.parquet").exists()
        assert ran != bool(exp.get("gpu_only")) or "skipped" in proc.stderr + proc.stdout, name
