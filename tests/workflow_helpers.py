"""Run the real Snakefile in a subprocess, in a temporary working directory."""
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from rfw2s.config import normalize

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "configs" / "tiny.yaml"


def load_tiny() -> dict:
    return normalize(yaml.safe_load(TINY.read_text()))


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = Path(workdir) / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """``env``: variables added to this process's environment."""
    # A bare system PATH, no venv on it: the jobs' `python3` must still be this interpreter
    # (the workflow puts its folder first), not the system's.
    env = {**os.environ, "PATH": os.defpath, **(env or {})}
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), "--cores", "2", "--resources", "gpu=1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(workdir: Path, configfile: Path, *targets: str, env: dict | None = None) -> dict[str, int]:
    """Rule -> job count that a dry run would execute (empty when nothing is stale)."""
    proc = snakemake(workdir, configfile, "--dry-run", *targets, env=env)
    text = proc.stdout + proc.stderr
    match = re.search(r"Job stats:\njob\s+count\n[-\s]+\n(.*?)\ntotal", text, re.S)
    if match is None:
        assert "Nothing to be done" in text, text[-2000:]
        return {}
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", match.group(1), re.M)}
