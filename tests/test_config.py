"""Invalid configs stop before any job runs, with a message naming the key."""
import copy

import pytest

from rfw2s.config import ConfigError, check, normalize
from workflow_helpers import load_tiny, snakemake, write_config
from conftest import GPU_MISSING


def _set(path, value):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return edit


def _delete(path):
    def edit(config):
        node = config
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return edit


EXP = ("experiments", "tiny")
M23 = ("experiments", "tiny_model23")
BAD_CONFIGS = {
    "another model's parameter": (_set(EXP + ("spike_exponent",), 0.5), "'spike_exponent' is not one of"),
    "model parameter of wrong type": (_set(EXP + ("d",), "thirty-two"), "'thirty-two' is not of type 'integer'"),
    "model parameter out of range": (_set(EXP + ("d",), 1), "d"),
    "model 2.3 exponent out of range": (_set(M23 + ("dim_exponent",), -1.0), "dim_exponent"),
    "model 2.3 unknown target": (_set(M23 + ("target",), "last"), "target"),
    "student beyond LAPACK's eigh": (lambda c: (c.update(solver="eigh"), _set(EXP + ("m_st",), 40000)(c)),
                                     "LAPACK"),
    "unknown solver": (_set(("solver",), "cholesky"), "solver"),
    "unknown kernel cache choice": (_set(("kernel_cache",), "sometimes"), "kernel_cache"),
    "teacher sizes not a list": (_set(EXP + ("m_te",), 16), "m_te"),
    "time grid without num": (_set(EXP + ("t",), {"min": 1.0, "max": 10.0}), "'num' is a required property"),
    "one sampled run": (lambda c: c["experiments"]["tiny"]["validation"]["sampled"].update(runs=1), "runs"),
    "plot dpi as text": (_set(("plot",), {"dpi": "high"}), "dpi"),
    "lanczos tolerance not positive": (_set(("lanczos",), {"tol": 0.0}), "tol"),
    "validation on an ablation": (_set(EXP + ("m_st",), [256, 1024]), "validation: needs a single integer m_st"),
    "m_st rule without factor": (_set(M23 + ("m_st",), {"d_power": 2}), "m_st"),
    "unknown top-level key": (_set(("colour",), "red"), "colour"),
    "unknown experiment key": (_set(EXP + ("m_ts",), 3), "m_ts"),
    "teacher not smaller than student": (_set(EXP + ("m_te",), [8, 1024]), "experiments.tiny.m_te"),
    "empty teacher list": (_set(EXP + ("m_te",), []), "m_te"),
    "non-integer size": (_set(EXP + ("m_st",), 10.5), "m_st"),
    "zero replicates": (_set(EXP + ("replicates",), 0), "replicates"),
    "negative teacher size": (_set(EXP + ("m_te",), [-4, 8]), "m_te"),
    "time grid min >= max": (_set(EXP + ("t",), {"min": 1e5, "max": 1e2, "num": 10}), "experiments.tiny.t"),
    "time grid one point": (_set(EXP + ("t",), {"min": 1, "max": 1e2, "num": 1}), "num"),
    "unknown model": (_set(EXP + ("model",), "resnet"), "'resnet' is not one of ['linear_spiked', 'relu_sphere']"),
    "unknown backend": (_set(("backend",), "tpu"), "backend"),
    "missing seed": (_delete(EXP + ("seed",)), "seed"),
    "no experiments": (_set(("experiments",), {}), "experiments"),
    "experiment named like a rule": (lambda c: c["experiments"].update(curves=c["experiments"].pop("tiny_model23")),
                                     "experiment name 'curves' is also the name of a workflow rule"),
}


@pytest.mark.workflow
@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_stops_before_any_job(tmp_path, case):
    edit, key = BAD_CONFIGS[case]
    config = copy.deepcopy(load_tiny())
    edit(config)
    # A dry run: should a case ever be valid, it fails here instead of computing.
    proc = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert key in output, output[-2000:]
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
@pytest.mark.skipif(GPU_MISSING is None, reason="a GPU is usable here")
def test_cupy_backend_without_gpu_stops_with_a_clear_message(tmp_path):
    config = load_tiny()
    config["backend"] = "cupy"
    proc = snakemake(tmp_path, write_config(tmp_path, config), check=False)
    assert proc.returncode != 0
    assert "backend: cupy was requested but" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_a_student_too_large_for_memory_is_refused_with_the_size_it_needs():
    config = load_tiny()
    # Lanczos: too little memory even to store the kernel, so matrix-free; still too much
    # (a 1024-row tile and its temporaries, 400 steps of a Lanczos block of 3 + 1 vectors, features).
    with pytest.raises(ConfigError, match=r"relu_sphere-d16-m1024-seed0 needs about 44.6 MiB \(matrix_free\), "
                                          r"more than the 1.0 MiB of this machine"):
        check(config, backend="numpy", memory=1 << 20)
    config["solver"] = "eigh"  # dense eigh: 5 matrices of 1024^2 doubles, plus the features
    with pytest.raises(ConfigError, match=r"relu_sphere-d16-m1024-seed0 needs about 40.1 MiB \(eigh\)"):
        check(config, backend="numpy", memory=1 << 20)
    check(config, backend="numpy", memory=1 << 34)  # fits: no error


def test_semantic_check_lists_every_problem():
    config = load_tiny()
    exp = config["experiments"]["tiny"]
    exp["m_te"] = [8, 8, 2048]
    exp["t"] = {"min": 10.0, "max": 10.0, "num": 5}
    with pytest.raises(ConfigError) as err:
        check(config)
    message = str(err.value)
    assert "m_te: every teacher size must be smaller than m_st = 1024; got [2048]" in message
    assert "distinct" in message
    assert "experiments.tiny.t: need 0 < min < max" in message


def test_yaml_exponent_strings_are_read_as_numbers():
    config = {"experiments": {"a": {"t": {"min": "1.0e2", "max": "1e8", "num": 3}}}}
    normalize(config)
    assert config["experiments"]["a"]["t"] == {"min": 100.0, "max": 1e8, "num": 3}
    config = {"experiments": {"a": {"t": {"min": "soon", "max": 1.0, "num": 3}}}}
    assert normalize(config)["experiments"]["a"]["t"]["min"] == "soon"  # left for the schema


def test_a_student_width_listed_twice_trains_each_teacher_once():
    from rfw2s.config import student_groups

    exp = load_tiny()["experiments"]["tiny"]
    groups = student_groups(exp, [256, 1024, 256])
    assert [sorted(t) for _, t in groups.values()] == [sorted(exp["m_te"])] * 2


@pytest.mark.parametrize("settings, backend, memory, how", [
    ({}, "numpy", 1 << 40, "built"),  # d = 16: building costs less than writing and reading
    ({}, "cupy", 1 << 40, "built"),  # a GPU builds it in the curve job
    ({"kernel_cache": "always"}, "cupy", 1 << 40, "dense"),
    ({"kernel_cache": "always"}, "numpy", 1 << 40, "dense"),
    ({}, "numpy", 8 * 1024**2, "matrix_free"),  # the kernel would take all the memory
    ({"matrix_free": "always"}, "numpy", 1 << 40, "matrix_free"),
    ({"solver": "eigh", "kernel_cache": "never"}, "numpy", 1 << 40, "eigh"),
])
def test_how_the_curve_job_reaches_the_kernel(settings, backend, memory, how):
    from rfw2s.config import operator, solver_settings, student

    s = student(load_tiny()["experiments"]["tiny"], 8, 1024)
    assert operator(s, solver_settings(settings), memory, backend) == how


@pytest.mark.parametrize("m_te, backend, how, kernel_job", [
    (64, "numpy", "built", "matrix_free"),  # d = 512: the kernel function and memory dominate
    (128, "numpy", "dense", "built"),  # d = 1448: the product dominates; cached, built whole (syrk)
    (128, "cupy", "built", "built"),
])
def test_the_cpu_caches_a_kernel_where_its_product_dominates(m_te, backend, how, kernel_job):
    from rfw2s.config import PRODUCT_BOUND_DIM, kernel_job_layout, operator, solver_settings, student

    exp = load_tiny()["experiments"]["tiny_model23"]
    s = student(exp, m_te, 1024)
    assert (s.spec["d"] >= PRODUCT_BOUND_DIM) == (kernel_job == "built")
    assert operator(s, solver_settings({}), 1 << 40, backend) == how
    assert kernel_job_layout(s.spec["d"]) == kernel_job


def test_curve_jobs_are_shared_only_between_experiments_with_as_many_replicates():
    from rfw2s.config import curve_jobs, owners

    tiny = load_tiny()["experiments"]["tiny"]
    same, more = copy.deepcopy(tiny), copy.deepcopy(tiny)
    more["replicates"] = tiny["replicates"] + 1  # a curve job holds every replicate of its width
    experiments = {"tiny": tiny, "same": same, "more": more}
    teacher_owner, curve_owner = owners(experiments, curve_jobs(experiments))
    assert {teacher_owner[(name, m)] for name in experiments for m in tiny["m_te"]} == {"tiny"}
    assert {owner for (name, _), owner in curve_owner.items() if name != "more"} == {"tiny"}
    assert {owner for (name, _), owner in curve_owner.items() if name == "more"} == {"more"}
