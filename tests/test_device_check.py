"""The one-shot device check (bench/device_check.sh, bench/device_check.py) works before a GPU
runs it: its dry run lists every stage within the time budget on any machine, a stage cut by
its cap leaves its output and the final table, and every Python stage runs its code, at tiny
sizes, on the emulated CuPy (tests/emulated_cupy.py)."""
import importlib.util
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import emulated_cupy
from conftest import NEEDS_COMPILER

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "device_check.sh"


def _module():
    spec = importlib.util.spec_from_file_location("device_check", REPO / "bench" / "device_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_dry_run_lists_every_stage_and_its_cap_within_the_budget():
    proc = subprocess.run(["bash", str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PATH": os.defpath})  # no GPU, no CuPy, no venv needed
    assert proc.returncode == 0, proc.stderr
    stages = dict(re.findall(r"^(\w+)\s+(\d+)s  ", proc.stdout, re.M))
    assert list(stages)[:3] == ["wheels", "versions", "kernels"] and "fig2" in stages
    assert {"tests", "racecheck", "memcheck"} <= set(stages)
    # Every Python stage but the sanitizer's program has a stage of its own.
    assert set(_module().STAGES) - {"sanitize"} <= set(stages)
    assert sum(int(cap) for cap in stages.values()) <= 280
    assert 'carry=[".whl"]' in proc.stdout and "timeout_s=330" in proc.stdout
    for script in ("device_check.sh", "device_wheels.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / "bench" / script)]).returncode == 0


def test_a_stage_cut_by_its_cap_keeps_its_output_and_the_final_table(tmp_path):
    # A Python that prints a row and hangs: the stage stops at its cap (here the budget's
    # remainder, 4 s), what it printed is in the log, and the table says so.
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho '{\"stage\": \"versions\", \"started\": true}'\nexec sleep 60\n")
    python.chmod(0o755)
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": str(python), "DEVICE_CHECK_STAGES": "versions",
           "DEVICE_CHECK_SECONDS": "9"}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    table = (out / "stages.tsv").read_text().splitlines()
    assert table[1].split("\t")[:2] == ["versions", "stopped at its cap"]
    assert '"started": true' in table[1]  # the last line it printed, for want of a KEY line
    assert '"started": true' in (out / "device_check.log").read_text()
    summary = (out / "summary.md").read_text()
    assert "| versions | stopped at its cap |" in summary and summary in proc.stdout


def test_the_floors_follow_their_formulas():
    check = _module()
    M, d, p = 131072, 32, 6
    elements = M * M
    h100 = check.product_floors(M, d, p, check.PEAKS["H100"])
    h200 = check.product_floors(M, d, p, check.PEAKS["H200"])
    # The fused kernel: every operation on the ordinary FP64 pipes, the same on both cards.
    assert h100["fused"] == h200["fused"] == pytest.approx((2 * d + check.KAPPA_FLOPS + 2 * p) * elements / 34e12)
    assert h100["fused"] == pytest.approx(0.0586, abs=5e-5)
    assert h100["ideal"] == pytest.approx(0.0397, abs=5e-5)
    # Tiles: their traffic bounds them (16 bytes an element, 32 with the kernel function in place).
    assert h100["tile_reading"] == pytest.approx(16 * elements / 3.35e12)
    assert h200["plain_tiles"] == pytest.approx(32 * elements / 4.8e12)
    assert check.device_peaks("GPU NVIDIA H100 80GB HBM3") == check.PEAKS["H100"]
    assert check.device_peaks("GPU Emulated GPU (NumPy and g++)") is None


@NEEDS_COMPILER
def test_every_python_stage_runs_on_the_emulated_cupy(monkeypatch, tmp_path):
    emulated_cupy.install(monkeypatch)
    monkeypatch.setenv("RFW2S_SANITIZE_FALLBACKS", "1")
    check = _module()
    rows = tmp_path / "rows.jsonl"
    for stage in check.STAGES:
        check.run(stage, "tiny", str(rows))
    written = [json.loads(line) for line in rows.read_text().splitlines()]
    keys = {row["stage"]: row["key"] for row in written if "key" in row}
    assert set(keys) == set(check.STAGES)
    assert "failed: none" in keys["kernels"]
    assert "(ok," in keys["curves"]
    fallbacks = [row for row in written if row.get("route") in ("kappa in place + cuBLAS", "tile path")]
    assert fallbacks and all(row["error"] < check.KERNEL_TOL for row in fallbacks)
    assert all(row["nan_kept"] for row in written if "nan_kept" in row)


def test_a_failing_case_is_recorded_and_the_stage_goes_on(tmp_path, capsys):
    check = _module()
    rows, failures = check.Rows("kernels", str(tmp_path / "rows.jsonl")), []
    assert check._attempt(rows, failures, "fused d=7 p=3", lambda: 1 / 0) is None
    assert check._attempt(rows, failures, "fine", lambda: 42) == 42
    assert failures == ["fused d=7 p=3"]
    row = json.loads((tmp_path / "rows.jsonl").read_text())
    assert row == {"stage": "kernels", "case": "fused d=7 p=3", "failed": "ZeroDivisionError: division by zero"}
    assert "Traceback" in capsys.readouterr().err
