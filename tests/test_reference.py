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


@pytest.mark.parametrize("seed", [0, 1])
def test_the_fit_tolerance_is_the_line_s_worst_first_order_move(seed):
    """line_sensitivity (the slack the fit columns are compared with) equals the worst move of
    numpy.polyfit's slope and intercept when every point moves by at most h, to first order."""
    import numpy as np

    from reference_tables import line_sensitivity

    rng = np.random.default_rng(seed)
    x = np.sort(rng.uniform(-7, -1, 6))
    y = 1.4 * x + 0.3 + 0.05 * rng.standard_normal(6)
    h = 1e-7
    base = np.polyfit(x, y, 1)
    worst = np.zeros(2)
    for i in range(len(x)):
        for moved in ((x + h * (np.arange(len(x)) == i), y), (x, y + h * (np.arange(len(x)) == i))):
            worst += np.abs(np.polyfit(*moved, 1) - base) / h
    assert np.allclose(line_sensitivity(x, y), worst, rtol=1e-5)
