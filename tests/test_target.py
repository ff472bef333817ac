"""The plan is a function of the configuration and its resolved target, never of the machine
that builds it; a job computes where its recipe says, or stops."""
import copy
import json
import sys

import pytest

import emulated_cupy
from conftest import NEEDS_COMPILER
from rfw2s import backend as backends
from rfw2s import target as targets
from rfw2s.config import ConfigError, validate
from rfw2s.plan import Plan
from steps import SCHEMA
from workflow_helpers import load_tiny

GIB = 1 << 30


def _config(**top) -> dict:
    return validate({**copy.deepcopy(load_tiny()), **top}, SCHEMA)


def _keys(plan: Plan) -> dict:
    return {kind: sorted(steps) for kind, steps in plan.steps.items()}


def _recipes(plan: Plan) -> list[dict]:
    found = [s.recipe.as_dict() for steps in plan.steps.values() for s in steps.values()]
    for exp in plan.experiments.values():
        found += [r.as_dict() for r in (exp.tables_recipe, exp.validation, exp.degrees) if r is not None]
    return found


def _no_gpu_probe():
    raise AssertionError("the plan looked for a GPU although the config declares its target")


def test_a_declared_cupy_plan_needs_no_cupy_and_equals_the_plan_made_on_such_a_gpu(monkeypatch):
    config = _config(backend="cupy", gpu_memory_gb=16)
    monkeypatch.setitem(sys.modules, "cupy", None)  # `import cupy` fails here
    declared = Plan(config, targets.resolve(config, probe=_no_gpu_probe))
    assert declared.target.backend == "cupy" and declared.target.gpu_memory == 16 * GIB
    monkeypatch.undo()
    # The same config without the declaration, where the (emulated) GPU has 16 GiB: it is found.
    emulated_cupy.install(monkeypatch)
    monkeypatch.setitem(emulated_cupy.MEMORY, "total", 16 * GIB)
    found = Plan(_config(backend="cupy"), targets.resolve(_config(backend="cupy")))
    assert not found.target.declared_gpu_memory and found.target.gpu_memory == 16 * GIB
    assert _keys(found) == _keys(declared)
    assert [s.recipe.as_dict() for s in found.steps["curves"].values()] == \
           [s.recipe.as_dict() for s in declared.steps["curves"].values()]


def test_how_much_gpu_memory_is_declared_changes_only_the_operators_it_implies():
    wide = dict(load_tiny()["experiments"]["tiny_ablation"], m_st=[256, 16384])

    def plan(gib):
        config = validate({"backend": "cupy", "gpu_memory_gb": gib, "experiments": {"wide": copy.deepcopy(wide)}},
                          SCHEMA)
        return Plan(config, targets.resolve(config))

    big, bigger, small = plan(16), plan(32), plan(3)
    assert _keys(big) == _keys(bigger)  # the same operators: no memory figure in any recipe
    operators = {s.recipe.m_st: s.recipe.operator for s in small.steps["curves"].values()}
    assert operators == {256: "stored", 16384: "tiled"}  # a 2 GiB kernel in 3 GiB: rebuilt tile by tile
    assert {s.recipe.operator for s in big.steps["curves"].values()} == {"stored"}
    assert _keys(small)["curves"] != _keys(big)["curves"]


def test_no_recipe_names_auto_and_auto_plans_numpy_keys_where_there_is_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    auto_config, numpy_config = _config(backend="auto"), _config(backend="numpy")
    auto = Plan(auto_config, targets.resolve(auto_config))
    numpy_plan = Plan(numpy_config, targets.resolve(numpy_config))
    assert auto.target.backend == "numpy"
    assert _keys(auto) == _keys(numpy_plan)
    assert _recipes(auto) == _recipes(numpy_plan)
    for recipe in _recipes(auto):
        assert "auto" not in json.dumps(recipe), recipe
    # The steps that are not GPU rules run NumPy whatever the target, and say so.
    config = _config(backend="cupy", gpu_memory_gb=16)
    gpu = Plan(config, targets.resolve(config))
    for recipe in _recipes(gpu):
        assert recipe["backend"] == ("cupy" if recipe["step"] in ("kernel", "eigh", "curves", "validation")
                                     else "numpy"), recipe["step"]


@pytest.mark.parametrize("top, message", [
    ({"gpu_memory_gb": 0}, "gpu_memory_gb: 0 is less than or equal to the minimum of 0"),
    ({"gpu_memory_gb": "16G"}, "gpu_memory_gb: '16G' is not of type 'number'"),
    ({"memory_gb": -2}, "memory_gb: -2 is less than or equal to the minimum of 0"),
])
def test_memory_declarations_must_be_positive_numbers(top, message):
    with pytest.raises(ConfigError, match=message):
        _config(**top)


def test_cupy_without_a_gpu_or_a_declaration_is_refused_naming_the_key():
    with pytest.raises(targets.TargetError, match=r"'backend': cupy, but CuPy found no CUDA device on this machine, "
                                                  r"and gpu_memory_gb is not set.*gpu_memory_gb: 79"):
        targets.resolve(_config(backend="cupy"), probe=lambda: (None, "CuPy found no CUDA device"))


@pytest.mark.parametrize("top, where", [
    ({"backend": "cupy", "gpu_memory_gb": 0.001}, r"the 1.0 MiB that gpu_memory_gb: 0.001 declares"),
    ({"backend": "numpy", "memory_gb": 0.001}, r"the 1.0 MiB that memory_gb: 0.001 declares"),
])
def test_a_declared_memory_too_small_for_a_student_is_refused_with_key_value_and_need(top, where):
    config = _config(**top)
    with pytest.raises(ConfigError, match=r"experiments.tiny: student relu_sphere-d16-m1024-seed0 needs about "
                                          r"[0-9.]+ MiB \(tiled\), more than " + where):
        Plan(config, targets.resolve(config))


def test_a_job_side_process_reads_the_target_handed_down_and_never_probes(monkeypatch):
    config = _config(backend="auto")
    monkeypatch.setenv(targets.VARIABLE, "")  # none handed down (and restored after: the main process sets it)
    with pytest.raises(targets.TargetError, match="was handed no plan target"):
        targets.for_this_process(config, main=False, probe=_no_gpu_probe)
    main = targets.for_this_process(config, main=True, probe=lambda: (40 * GIB, None))
    assert main == targets.Target("cupy", 40 * GIB, main.host_memory)
    # A job-side process (on a node without a GPU) plans for the target handed down.
    assert targets.for_this_process(config, main=False, probe=_no_gpu_probe) == main


def test_a_cupy_job_without_a_gpu_stops_naming_where_it_ran(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(backends.JobError) as err:
        backends.for_job("cupy", gpus="0")
    message = str(err.value)
    for part in ("recipe computes on CuPy", "host ", "SLURM_JOB_ID='4711'", "CUDA_VISIBLE_DEVICES=''",
                 "the resource gpu=0", "CuPy is not importable"):
        assert part in message, message
    assert backends.for_job("numpy").name == "numpy"  # a NumPy recipe runs NumPy, GPU or not
    with pytest.raises(backends.JobError, match="resolved when the run was planned; got 'auto'"):
        backends.for_job("auto")


@NEEDS_COMPILER
def test_a_gpu_smaller_than_the_declared_memory_stops_the_job_with_both_figures(monkeypatch):
    emulated_cupy.install(monkeypatch)
    monkeypatch.setitem(emulated_cupy.MEMORY, "total", 16 * GIB)
    assert backends.for_job("cupy", declared_gpu_memory=16 * GIB).name == "cupy"
    with pytest.raises(backends.JobError, match=r"gpu_memory_gb = 80 GiB, but this job's GPU has 16.00 GiB"):
        backends.for_job("cupy", declared_gpu_memory=80 * GIB)
