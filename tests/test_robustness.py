"""Crash safety and determinism, tried for real on a small config."""
import os
import signal
import subprocess
import time

import numpy as np
import pandas as pd
import pytest

from rfw2s.artifacts import DamagedArtifact, load_npy, npy_rows, save_npy
from workflow_helpers import command, environment, snakemake, write_config

pytestmark = pytest.mark.workflow

# Kernels cached (they would be built in the curve jobs at d = 8): the crash and damage
# tests need the cached matrices.
SMALL = {"backend": "numpy", "plot": {"dpi": 40}, "kernel_cache": "always",
         "experiments": {"small": {"model": "relu_sphere", "d": 8, "m_st": 384, "m_te": [8, 32], "replicates": 2,
                                   "seed": 5, "t": {"min": 1.0, "max": 1.0e7, "num": 40}}}}
TABLES = ("losses", "summary", "fit")


def _run(workdir, config, cores=2, check=True):
    workdir.mkdir(parents=True, exist_ok=True)
    return snakemake(workdir, write_config(workdir, config), cores=cores, check=check)


def _tables(workdir):
    return {name: pd.read_parquet(workdir / "results" / "small" / f"{name}.parquet") for name in TABLES}


def _assert_identical(a, b):
    for name in TABLES:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("reference")
    _run(workdir, SMALL, cores=1)
    return workdir


def test_same_tables_with_one_or_two_cores_and_on_rerun(reference, tmp_path):
    _run(tmp_path / "two", SMALL, cores=2)
    _assert_identical(_tables(reference), _tables(tmp_path / "two"))
    _run(tmp_path / "two", SMALL, cores=2, check=True)  # nothing stale: a rerun changes nothing
    _assert_identical(_tables(reference), _tables(tmp_path / "two"))


def test_killed_during_an_eigendecomposition_then_rerun_gives_the_uninterrupted_results(reference, tmp_path):
    # Wide enough that eigh takes about a second: the kill lands inside it.
    config = dict(SMALL, solver="eigh")
    config["experiments"] = {"small": dict(SMALL["experiments"]["small"], m_st=1500)}
    dense = tmp_path / "dense"
    _run(dense, config)  # the eigh path, uninterrupted
    work = tmp_path / "killed"
    work.mkdir()
    configfile = write_config(work, config)
    proc = subprocess.Popen(command(work, configfile, cores=1), stdout=subprocess.DEVNULL, env=environment(),
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    logs = work / "results" / "cache"
    while time.time() < deadline and not any("eigh:" in p.read_text() for p in (logs / "eigh").rglob("r*.log")):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # snakemake and the running eigh job, mid-way
    proc.wait()
    assert not (work / "results" / "small" / "losses.parquet").exists()
    # Nothing half-written under a final name: every cached matrix present is complete.
    for npy in logs.rglob("*.npy"):
        load_npy(npy)
    # The README's recovery: unlock, then rerun (jobs Snakemake saw start but not finish are redone).
    snakemake(work, configfile, "--unlock")
    snakemake(work, configfile, "--rerun-incomplete")
    _assert_identical(_tables(dense), _tables(work))


def test_a_truncated_cached_matrix_is_refused_with_how_to_rebuild_it(reference, tmp_path):
    import shutil

    work = tmp_path / "copy"
    shutil.copytree(reference, work, symlinks=True)
    gram = next((work / "results" / "cache").rglob("gram_r0.npy"))
    with open(gram, "r+b") as fh:
        fh.truncate(gram.stat().st_size // 2)
    proc = _run(work, SMALL, check=False)
    assert proc.returncode != 0
    log = "".join(p.read_text() for p in (work / "results" / "cache" / "curves").rglob("*.log"))
    assert f"rm {gram.relative_to(work)}" in log and "run snakemake again to rebuild it" in log


def test_sidecar_catches_a_swapped_matrix(tmp_path):
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    save_npy(a, np.eye(3), {"made": "a"})
    save_npy(b, 2 * np.eye(3), {"made": "b"})
    os.replace(b, a)  # right shape and dtype, wrong content
    with pytest.raises(DamagedArtifact, match="checksum"):
        load_npy(a)
    np.save(tmp_path / "bare.npy", np.eye(2))
    with pytest.raises(DamagedArtifact, match="has no record"):
        load_npy(tmp_path / "bare.npy")


def test_a_matrix_written_by_row_blocks_loads_and_checks_and_an_incomplete_one_never_lands(tmp_path):
    G = np.arange(35.0).reshape(7, 5)
    path = tmp_path / "G.npy"
    with npy_rows(path, G.shape, {"by": "blocks"}) as write:
        for start in range(0, 7, 3):
            write(G[start:start + 3])
    assert np.array_equal(load_npy(path), G)  # the checksum taken while writing matches
    with pytest.raises(ValueError, match="6 of 7 rows written"), npy_rows(tmp_path / "short.npy", (7, 5)) as write:
        write(G[:6])
    with pytest.raises(ValueError, match="do not fit the remaining 1 rows"), npy_rows(tmp_path / "long.npy", (7, 5)) as write:
        write(G[:6])
        write(G[:2])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["G.npy", "G.npy.meta.json"]


def test_kernel_job_refuses_when_the_disk_cannot_hold_the_matrix(tmp_path, monkeypatch):
    import shutil

    from rfw2s import cli, resources
    from steps import plan_of

    plan = plan_of({"x": {"model": "relu_sphere", "d": 3, "m_st": 4, "m_te": [2], "replicates": 1, "seed": 0,
                          "t": {"min": 1.0, "max": 10.0, "num": 3}}}, kernel_cache="always")
    (kernel,) = plan.steps["kernel"].values()
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(resources.shutil, "disk_usage", lambda p: usage._replace(free=100))
    with pytest.raises(resources.InsufficientResources, match=r"kernel matrix needs 256.0 B of disk .* 100.0 B"):
        cli.main(["kernel", "--recipe", kernel.recipe.to_json(), "--replicate", "0", "--out", str(tmp_path / "gram.npy")])
    assert not (tmp_path / "gram.npy").exists()
