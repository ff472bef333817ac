"""The README's test command changes nothing on the system: without a running cluster the Slurm
tests are skipped, saying how to enable them, and no Slurm daemon is started."""
import os
import subprocess
import sys

from workflow_helpers import REPO


def _daemons() -> set[str]:
    """Process ids of the running Slurm and munge daemons."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        if name in ("slurmctld", "slurmd", "munged"):
            found.add(pid)
    return found


def test_without_a_cluster_the_slurm_tests_skip_with_how_to_enable_them_and_start_nothing(tmp_path):
    before = _daemons()
    state = tmp_path / "no-cluster"  # a cluster folder nothing was started in
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"RFW2S_SLURM_STATE": str(state)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                           str(REPO / "tests" / "test_slurm.py")], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert " passed" not in out and "skipped" in out, out[-3000:]
    assert "`tests/slurm/cluster.sh up`" in out and "`tests/slurm/cluster.sh down`" in out, out[-3000:]
    assert not state.exists()  # cluster.sh up was not run
    assert _daemons() <= before  # no daemon started
