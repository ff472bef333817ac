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
TINY_EXTENSIONS = REPO / "tests" / "configs" / "tiny_extensions.yaml"


def load_tiny(path: Path = TINY) -> dict:
    return normalize(yaml.safe_load(Path(path).read_text()))


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    path = Path(workdir) / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def command(workdir: Path, configfile: Path, *args: str, cores: int = 2) -> list[str]:
    """``snakemake`` on the repository's Snakefile in ``workdir`` with ``configfile``."""
    # The other arguments come first: a target after --resources would be read as a resource.
    return [sys.executable, "-m", "snakemake", *args, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--configfile", str(configfile), "--cores", str(cores), "--resources", "gpu=1"]


def environment(env: dict | None = None) -> dict:
    """This process's environment with a bare system PATH (no venv on it: the jobs' `python3`
    must still be this interpreter, which the workflow puts first), plus ``env``."""
    return {**os.environ, "PATH": os.defpath, **(env or {})}


def snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True, env: dict | None = None,
              cores: int = 2) -> subprocess.CompletedProcess:
    """``env``: variables added to this process's environment."""
    proc = subprocess.run(command(workdir, configfile, *args, cores=cores), capture_output=True, text=True,
                          env=environment(env), timeout=600)
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
