"""The dataset experiments through the DAG, on tiny sizes (tests/configs/tiny_datasets.yaml): the
population variant over student widths, the split protocol, a binary target; PGR and accuracy
in every table; the data named by its content."""
import shutil

import numpy as np
import pandas as pd
import pytest

from rfw2s.analysis import LOSS_COLUMNS, SUMMARY_COLUMNS
from workflow_helpers import REPO, load_tiny, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow
TINY_DATASETS = REPO / "tests" / "configs" / "tiny_datasets.yaml"


def _digits_file(folder, rows=300, edit=None):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X[:rows].copy()
    if edit:
        X[edit] += 1.0
    np.savez(folder / "digits_small.npz", X=X, y=y[:rows])


@pytest.fixture(scope="module")
def datasets_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("datasets")
    _digits_file(workdir)
    config = load_tiny(TINY_DATASETS)
    configfile = write_config(workdir, config)
    snakemake(workdir, configfile)
    return workdir, configfile, config


def test_every_dataset_experiment_has_its_tables_pgr_and_accuracies(datasets_run):
    workdir, _, config = datasets_run
    for name in config["experiments"]:
        out = workdir / "results" / name
        losses, summary = pd.read_parquet(out / "losses.parquet"), pd.read_parquet(out / "summary.parquet")
        assert list(losses.columns) == LOSS_COLUMNS and list(summary.columns) == SUMMARY_COLUMNS
        for column in ("L_ceiling", "pgr", "accuracy_TE", "best_accuracy_ST", "accuracy_ceiling", "pgr_accuracy"):
            assert summary[column].notna().all(), (name, column)
        assert (summary["L_ceiling"] < summary["L_ST_min"]).all() and (summary["pgr"] < 1).all()
        assert ((losses["accuracy_ST"] >= 0) & (losses["accuracy_ST"] <= 1)).all()
        for figure in ("fig2a", "fig2b", "pgr", "accuracy"):
            assert (out / "figures" / f"{figure}.png").stat().st_size > 0, (name, figure)
    digits = pd.read_parquet(workdir / "results" / "tiny_digits" / "losses.parquet")
    # 300 rows: the 512-wide students on the rows (dual), the 128-wide ones in parameter space.
    assert set(digits.groupby("m_st")["solver"].first().items()) == {(128, "lanczos"), (512, "dual")}
    assert digits["L_ST_inf"].notna().all()  # the infinite-width student on the rows' limit kernel
    assert (workdir / "results" / "tiny_digits" / "figures" / "ablation_heatmap.png").exists()
    split = pd.read_parquet(workdir / "results" / "tiny_split" / "summary.parquet")
    assert split["ratio_inf_best"].isna().all()  # measured on the test rows: no infinite-width curve there
    # The split's teacher is measured on the test rows, not where it was fitted.
    (teachers,) = [np.load(p) for p in (workdir / "results" / "cache" / "teachers").glob("dataset-*/r0.npz")
                   if '"split": {' in str(np.load(p)["recipe"])]
    assert not np.isclose(split.loc[split["replicate"] == 0, "L_TE"].iloc[0], float(teachers["loss_8"]))


def test_the_data_is_named_by_its_content_not_its_file(datasets_run, tmp_path):
    workdir, _, config = datasets_run
    # The same rows under another name: nothing to do.
    shutil.copy(workdir / "digits_small.npz", workdir / "renamed.npz")
    renamed = {**config, "experiments": {k: {**v, "source": {"path": "renamed.npz"}} if k != "tiny_cancer" else v
                                         for k, v in config["experiments"].items()}}
    assert planned_jobs(workdir, write_config(workdir, renamed, "renamed.yaml")) == {}
    # One value edited: the steps that use those rows, and nothing else.
    _digits_file(workdir, edit=(5, 20))
    jobs = planned_jobs(workdir, write_config(workdir, config, "edited.yaml"))
    experiments = {"tiny_digits", "tiny_split"}
    assert jobs["aggregate"] == jobs["figures"] == jobs["accuracy_figure"] == len(experiments)
    assert jobs["teachers"] == 2 * 2 and jobs["curves"] == 3  # two teacher recipes x 2 replicates; 128, 512, split
    _digits_file(workdir)  # as it was, for the other tests


def test_a_bad_dataset_stops_snakemake_before_any_job(tmp_path):
    config = load_tiny(TINY_DATASETS)
    config["experiments"]["tiny_cancer"]["target"] = {"kind": "binary", "positive": "benign"}
    proc = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    assert "experiments.tiny_cancer.target.positive: 'benign' does not occur in the target; its labels: 0, 1" in out
    assert "experiments.tiny_digits.source.path: file 'digits_small.npz' not found" in out
    assert not (tmp_path / "results").exists()
