"""The SLURM profile on a real Slurm cluster: one node on this machine (tests/slurm/).

These tests use the cluster that `tests/slurm/cluster.sh up` starts, and never start one
themselves (that installs Debian packages and starts daemons: the test command changes nothing
on the system). Where none answers they are skipped with the commands that enable them, except
under CI=true, where they fail (.ci/run starts the cluster and stops it).
"""
import os
import shutil
import subprocess
import sys

import pytest

from workflow_helpers import REPO

pytestmark = pytest.mark.workflow

SLURM = REPO / "tests" / "slurm"
IN_CI = os.environ.get("CI") == "true"
HOW_TO_ENABLE = ("no local Slurm cluster answers: start one with `tests/slurm/cluster.sh up` (as root on Debian: it "
                 "installs slurmctld, slurmd and munge), run the tests, then stop it with `tests/slurm/cluster.sh down`")


def _cluster_env() -> dict:
    """This process's environment plus cluster.sh's `export` lines."""
    out = subprocess.run([str(SLURM / "cluster.sh"), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        key, value = line.removeprefix("export ").split("=", 1)
        env[key] = value.replace("$PATH", os.environ.get("PATH", ""))
    return env


def _answers(env) -> bool:
    if not os.path.exists(env["SLURM_CONF"]):  # sinfo would retry reading it for a minute
        return False
    try:
        return subprocess.run(["sinfo"], env=env, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def slurm_env():
    env = _cluster_env()
    if not _answers(env):
        if IN_CI:
            pytest.fail(f"CI=true and {HOW_TO_ENABLE}")
        pytest.skip(HOW_TO_ENABLE)
    # The scripts run Snakemake on this interpreter (the one with the plugin installed).
    env["RFW2S_PYTHON"] = sys.executable
    return env


def _script(env, name, *args, work=None, timeout=1200):
    run_env = dict(env, **({"RFW2S_SLURM_WORK": str(work)} if work else {}))
    proc = subprocess.run([str(SLURM / name), *args], env=run_env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


def test_tiny_config_runs_every_job_on_slurm_with_its_resources_and_the_local_tables(slurm_env, tmp_path):
    proc = _script(slurm_env, "run-tiny.sh", work=tmp_path)
    assert "OK: Slurm run" in proc.stderr
    assert "Slurm jobs checked" in proc.stdout and "tables compared" in proc.stdout


def test_a_job_cancelled_by_slurm_fails_the_run_and_the_rerun_redoes_only_what_is_missing(slurm_env, tmp_path):
    proc = _script(slurm_env, "run-faults.sh", work=tmp_path)
    assert "run-faults.sh: OK" in proc.stderr and "'CANCELLED'" in proc.stderr


@pytest.mark.parametrize("case", ["no-partition", "unknown-partition", "too-much-memory"])
def test_input_slurm_refuses_stops_the_run_with_the_reason(slurm_env, tmp_path, case):
    proc = _script(slurm_env, "run-bad-input.sh", case, work=tmp_path, timeout=600)
    assert f"OK: {case}" in proc.stderr


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++: the jobs' GPU is the emulated CuPy")
def test_gpu_jobs_planned_without_a_gpu_compute_on_the_gpus_slurm_gives_them(slurm_env, tmp_path):
    proc = _script(slurm_env, "run-gpu.sh", work=tmp_path)
    assert "OK: run-gpu.sh" in proc.stderr and "tables compared" in proc.stdout
