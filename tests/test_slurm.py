"""The SLURM profile on a real Slurm cluster: one node on this machine (tests/slurm/).

The cluster is the one `tests/slurm/cluster.sh up` starts. If it does not answer, these
tests start it (needs root and apt-get on Debian) and stop it at the end; if it was
already up (CI starts it in .ci/run), they leave it up. Where it cannot be started (not
root, no apt-get) they are skipped with the reason, except under CI=true: then they fail.
"""
import os
import subprocess
import sys

import pytest

from workflow_helpers import REPO

pytestmark = pytest.mark.workflow

SLURM = REPO / "tests" / "slurm"
IN_CI = os.environ.get("CI") == "true"
CANNOT_HOST = 3  # cluster.sh up: this machine cannot host the cluster (not root, no apt-get)


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
    started = False
    if not _answers(env):
        proc = subprocess.run([str(SLURM / "cluster.sh"), "up"], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["(no message)"])[-1]
            if IN_CI:
                pytest.fail(f"CI=true and the local Slurm cluster could not be started: {reason}\n{proc.stderr[-3000:]}")
            if proc.returncode == CANNOT_HOST:
                pytest.skip(f"no local Slurm cluster here: {reason}")
            pytest.fail(f"tests/slurm/cluster.sh up failed:\n{proc.stderr[-3000:]}")
        started = True
    # The scripts run Snakemake on this interpreter (the one with the plugin installed).
    env["RFW2S_PYTHON"] = sys.executable
    yield env
    if started:
        subprocess.run([str(SLURM / "cluster.sh"), "down"], timeout=120)


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
