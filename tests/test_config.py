"""Invalid configs stop before any job runs, with a message naming the key; the plan's
choices (operators, memory, shared steps) from a valid one."""
import copy

import pytest

from conftest import GPU_MISSING
from rfw2s.config import ConfigError, normalize, validate
from rfw2s.plan import Plan, PlanError
from steps import SCHEMA, target_of
from workflow_helpers import load_tiny, snakemake, write_config


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
    "m_st rule of an unknown kind": (_set(M23 + ("m_st",), {"d_root": 2}), "m_st"),
    # Learning rules and samples: the key, what is wrong, what is allowed.
    "unknown learning rule": (_set(M23 + ("rule",), "adam"),
                              "experiments.tiny_model23.rule: 'adam' is none of the allowed forms: gradient_flow; "
                              "{name: gradient_flow}; {name: gradient_descent, steps: ..., eta or eta_times_lam_max: ...}; "
                              "{name: ridge, mu: ...}"),
    "unknown learning rule in a list": (_set(M23 + ("rule",), ["gradient_flow", {"name": "adam", "mu": {}}]),
                                        "experiments.tiny_model23.rule.1: {'name': 'adam', 'mu': {}} is none of"),
    "negative ridge penalty": (_set(M23 + ("rule",), {"name": "ridge", "mu": {"min": -1.0, "max": 1.0, "num": 5}}),
                               "experiments.tiny_model23.rule.mu.min: -1.0 is less than or equal to the minimum of 0"),
    "ridge penalties the wrong way round": (_set(M23 + ("rule",), {"name": "ridge", "mu": {"min": 1.0, "max": 0.01,
                                                                                          "num": 5}}),
                                            "experiments.tiny_model23.rule.mu: ridge's grid needs min < max; got "
                                            "min 1, max 0.01"),
    "ridge given step counts": (_set(M23 + ("rule",), {"name": "ridge", "steps": {"min": 1, "max": 9, "num": 5}}),
                                "experiments.tiny_model23.rule: 'mu' is a required property"),
    "fractional step counts": (_set(M23 + ("rule",), {"name": "gradient_descent", "eta": 1.0,
                                                      "steps": {"min": 0.5, "max": 10, "num": 5}}),
                               "experiments.tiny_model23.rule.steps.min: 0.5 is not of type 'integer'"),
    "step at 2 / lam_max": (_set(M23 + ("rule",), {"name": "gradient_descent", "eta_times_lam_max": 2.0,
                                                   "steps": {"min": 1, "max": 10, "num": 5}}),
                            "rule.eta_times_lam_max: 2.0 is greater than or equal to the maximum of 2"),
    "negative step": (_set(M23 + ("rule",), {"name": "gradient_descent", "eta": -1.0,
                                             "steps": {"min": 1, "max": 10, "num": 5}}),
                      "rule.eta: -1.0 is less than or equal to the minimum of 0"),
    "step given twice": (_set(M23 + ("rule",), {"name": "gradient_descent", "eta": 1.0, "eta_times_lam_max": 1.0,
                                                "steps": {"min": 1, "max": 10, "num": 5}}),
                         "experiments.tiny_model23.rule: give exactly one of eta, eta_times_lam_max"),
    "no sample": (_set(M23 + ("samples",), {"n": 0, "seed": 0}),
                  "experiments.tiny_model23.samples.n: 0 is less than the minimum of 1"),
    "a sample size of a word": (_set(M23 + ("samples",), {"n": [64, "all"], "seed": 0}),
                                "samples.n.1: 'all' is none of the allowed forms: an integer from 1 to 1048576; "
                                "'population'"),
    "no teacher sample": (_set(M23 + ("teacher_samples",), {"n": 0, "seed": 0}),
                          "experiments.tiny_model23.teacher_samples.n: 0 is less than the minimum of 1"),
    # A target is told apart by its kind: the problem of that kind, or the kinds, as written.
    "unknown target kind": (_set(EXP + ("target",), {"kind": "harmonic"}),
                            "experiments.tiny.target: {'kind': 'harmonic'} is none of the allowed forms: "
                            "{kind: linear}; {kind: harmonics, coefficients: ...}; {kind: relu_network, width: ..., "
                            "seed: ...}"),
    "target without its coefficients": (_set(EXP + ("target",), {"kind": "harmonics"}),
                                        "experiments.tiny.target: 'coefficients' is a required property"),
    "m_st rule with two kinds": (_set(M23 + ("m_st",), {"d_factor": 2, "d_power": 1.25}), "m_st"),
    "unknown top-level key": (_set(("colour",), "red"), "colour"),
    "unknown experiment key": (_set(EXP + ("m_ts",), 3), "m_ts"),
    "teacher not smaller than student": (_set(EXP + ("m_te",), [8, 1024]), "experiments.tiny.m_te"),
    "empty teacher list": (_set(EXP + ("m_te",), []), "m_te"),
    "non-integer size": (_set(EXP + ("m_st",), 10.5), "m_st"),
    "zero replicates": (_set(EXP + ("replicates",), 0), "replicates"),
    "negative teacher size": (_set(EXP + ("m_te",), [-4, 8]), "m_te"),
    "time grid min >= max": (_set(EXP + ("t",), {"min": 1e5, "max": 1e2, "num": 10}), "experiments.tiny.t"),
    "time grid one point": (_set(EXP + ("t",), {"min": 1, "max": 1e2, "num": 1}), "num"),
    "unknown model": (_set(EXP + ("model",), "resnet"), "'resnet' is not one of ['dataset', 'linear_spiked', 'relu_sphere'"),
    "unknown backend": (_set(("backend",), "tpu"), "backend"),
    "missing seed": (_delete(EXP + ("seed",)), "seed"),
    "no experiments": (_set(("experiments",), {}), "experiments"),
    "experiment named like a rule": (lambda c: c["experiments"].update(curves=c["experiments"].pop("tiny_model23")),
                                     "experiment name 'curves' is also the name of a workflow rule"),
    "experiment named like a pipeline folder": (
        lambda c: c["experiments"].update(cache=c["experiments"].pop("tiny_model23")),
        "experiments.cache: the name is taken by the pipeline's folder results/cache/"),
    "time grid with NaN": (_set(EXP + ("t", "min"), float("nan")),
                           "experiments.tiny.t.min: must be a finite number; got nan"),
    "infinite tolerance": (_set(("lanczos",), {"tol": float("inf")}), "lanczos.tol: must be a finite number; got inf"),
    "replicates beyond the bound": (_set(EXP + ("replicates",), 100000),
                                    "experiments.tiny.replicates: 100000 is greater than the maximum of 256"),
    "teacher sizes beyond the bound": (_set(EXP + ("m_te",), list(range(1, 100))),
                                       "experiments.tiny.m_te: 99 entries, more than the maximum of 64"),
    "time grid beyond the bound": (_set(EXP + ("t", "num"), 10**6),
                                   "experiments.tiny.t.num: 1000000 is greater than the maximum of 10000"),
    "missing model plugin file": (_set(("model_plugins",), ["no/such/model.py"]),
                                  "config key 'model_plugins': model plugin"),
}


# Refused by the Snakefile itself (it knows the rules and loads the plugins); every other case
# by the library's validation and plan, which the Snakefile runs before any job.
SNAKEFILE_ONLY = ("experiment named like a rule", "missing model plugin file")
# The cases also fed to the real snakemake: one of each kind of check.
THROUGH_SNAKEMAKE = SNAKEFILE_ONLY + ("another model's parameter", "time grid with NaN", "replicates beyond the bound",
                                      "teacher not smaller than student", "student beyond LAPACK's eigh",
                                      "experiment named like a pipeline folder", "unknown learning rule",
                                      "no sample")


@pytest.mark.parametrize("case", sorted(set(BAD_CONFIGS) - set(SNAKEFILE_ONLY)))
def test_bad_config_is_refused_naming_the_key(case):
    edit, key = BAD_CONFIGS[case]
    config = copy.deepcopy(load_tiny())
    edit(config)
    with pytest.raises(ConfigError) as err:
        Plan(validate(config, SCHEMA), target_of(memory=24 << 30))
    assert key in str(err.value)


@pytest.mark.workflow
@pytest.mark.parametrize("case", THROUGH_SNAKEMAKE)
def test_bad_config_stops_snakemake_before_any_job(tmp_path, case):
    edit, key = BAD_CONFIGS[case]
    config = copy.deepcopy(load_tiny())
    edit(config)
    # A dry run: should a case ever be valid, it fails here instead of computing.
    proc = snakemake(tmp_path, write_config(tmp_path, config), "--dry-run", check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert key in output, output[-2000:]
    assert "Traceback" not in output  # one message, not a stack
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
@pytest.mark.skipif(GPU_MISSING is None, reason="a GPU is usable here")
def test_cupy_without_a_gpu_stops_before_any_job_unless_its_memory_is_declared_and_then_its_jobs_stop(tmp_path):
    config = load_tiny()
    config["backend"] = "cupy"
    config["experiments"] = {"tiny_model23": config["experiments"]["tiny_model23"]}
    proc = snakemake(tmp_path, write_config(tmp_path, config), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout + proc.stderr
    assert "'backend': cupy, but CuPy is not importable" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()
    # Declared, the plan is made here; the GPU jobs stop with where they ran, and write nothing.
    config["gpu_memory_gb"] = 16
    proc = snakemake(tmp_path, write_config(tmp_path, config), "--keep-going", check=False)
    assert proc.returncode != 0
    logs = sorted((tmp_path / "results" / "cache" / "curves").glob("*/curves.log"))
    assert logs and not list((tmp_path / "results" / "cache" / "curves").glob("*/curves.parquet"))
    for log in logs:
        text = log.read_text()
        assert "curves job stopped before writing anything" in text and "the resource gpu=1" in text, text
        assert "Traceback" not in text
    assert list((tmp_path / "results" / "cache" / "teachers").glob("*/r0.npz"))  # NumPy steps ran


def _validated(config):
    return validate(copy.deepcopy(config), SCHEMA)


def test_a_student_too_large_for_memory_is_refused_with_the_size_it_needs():
    config = _validated(load_tiny())
    # Lanczos: too little memory even to store the kernel, so matrix-free; still too much
    # (a 1024-row tile and its temporaries, 400 steps of a Lanczos block of 3 + 1 vectors, features).
    with pytest.raises(PlanError, match=r"relu_sphere-d16-m1024-seed0 needs about 44.6 MiB \(tiled\), "
                                        r"more than the 1.0 MiB of this machine"):
        Plan(config, target_of(memory=1 << 20))
    config["solver"] = "eigh"  # dense eigh: 5 matrices of 1024^2 doubles
    with pytest.raises(PlanError, match=r"relu_sphere-d16-m1024-seed0 needs about 40.0 MiB \(eigh\)"):
        Plan(config, target_of(memory=1 << 20))
    Plan(config, target_of(memory=1 << 34))  # fits: no error


def test_a_sample_too_large_for_memory_is_refused_with_the_size_it_needs():
    config = load_tiny()
    config["experiments"]["tiny_model23"]["samples"] = {"n": 1 << 20, "seed": 0}
    with pytest.raises(PlanError, match=r"experiments.tiny_model23.samples.n: student linear_spiked-\S+ trained on "
                                        r"n = 1048576 inputs needs about [0-9.]+ GiB \(krylov\), more than the "
                                        r"1.0 GiB of this machine"):
        Plan(_validated(config), target_of(memory=1 << 30))


def test_a_student_too_wide_for_memory_on_samples_is_not_blamed_on_the_sample():
    config = load_tiny()
    config["experiments"]["tiny"].pop("validation")
    config["experiments"]["tiny"]["samples"] = {"n": 64, "seed": 0}
    config["experiments"]["tiny"]["m_st"] = 400_000  # too wide however few inputs
    with pytest.raises(PlanError, match=r"experiments.tiny: student relu_sphere-d16-m400000-seed0 trained on n = 64 "
                                        r"inputs needs about"):
        Plan(_validated(config), target_of(memory=1 << 30))


def test_semantic_check_lists_every_problem():
    config = load_tiny()
    exp = config["experiments"]["tiny"]
    exp["m_te"] = [8, 2048]
    exp["t"] = {"min": 10.0, "max": 10.0, "num": 5}
    with pytest.raises(ConfigError) as err:
        _validated(config)
    message = str(err.value)
    assert "experiments.tiny.m_te: every teacher size must be smaller than m_st = 1024; got [2048]" in message
    assert "experiments.tiny.t: need 0 < min < max" in message


def test_defaults_are_filled_from_the_schema_and_the_library():
    from rfw2s.krylov import LANCZOS_DEFAULTS
    from rfw2s.sample import DEFAULT_STEP_FRACTION

    config = _validated({"experiments": {"a": {"model": "linear_spiked", "m_st": 64, "m_te": [4], "replicates": 1,
                                               "seed": 0, "t": {"min": 1, "max": 10, "num": 3},
                                               "validation": {"convergence_m_st": [16], "sampled": {
                                                   "m_st": 16, "runs": 2, "batch": 8, "t_max": 1.0, "points": 2}}}}})
    assert config["lanczos"] == LANCZOS_DEFAULTS and config["solver"] == "lanczos" and config["backend"] == "auto"
    assert config["plot"] == {"dpi": 150, "spread": "range"}
    exp = config["experiments"]["a"]
    assert exp["validation"]["sampled"]["step_fraction"] == DEFAULT_STEP_FRACTION
    assert exp["dim_exponent"] == 1.5 and exp["target"] == "first" and exp["gpu_only"] is False


def test_yaml_exponent_strings_are_read_as_numbers():
    config = {"experiments": {"a": {"t": {"min": "1.0e2", "max": "1e8", "num": 3}}}, "lanczos": {"tol": "1.0e-12"}}
    normalize(config)
    assert config["experiments"]["a"]["t"] == {"min": 100.0, "max": 1e8, "num": 3}
    assert config["lanczos"]["tol"] == "1.0e-12"  # a signed exponent: PyYAML reads it as a number itself
    config = {"experiments": {"a": {"t": {"min": "soon", "max": 1.0, "num": 3}}}}
    assert normalize(config)["experiments"]["a"]["t"]["min"] == "soon"  # left for the schema


def _plan(experiments, memory=1 << 40, backend="numpy", **settings):
    from steps import plan_of

    return plan_of(experiments, backend=backend, memory=memory, **settings)


def test_a_student_width_listed_twice_trains_each_teacher_once():
    exp = load_tiny()["experiments"]["tiny"]
    plan = _plan({"tiny": exp})
    for key in plan.experiments["tiny"].convergence:
        assert sorted(plan.step("curves", key).recipe.m_te) == sorted(exp["m_te"])
    assert len(plan.experiments["tiny"].convergence) == 2  # 256 (twice in the validation) and 1024


@pytest.mark.parametrize("settings, backend, memory, operator", [
    ({}, "numpy", 1 << 40, "stored"),  # d = 16: building costs less than writing and reading
    ({}, "cupy", 1 << 40, "stored"),  # a GPU builds it in the curve job
    ({"kernel_cache": "always"}, "cupy", 1 << 40, "cached"),
    ({"kernel_cache": "always"}, "numpy", 1 << 40, "cached"),
    ({}, "numpy", 8 * 1024**2, "tiled"),  # the kernel would take all the memory
    ({"matrix_free": "always"}, "numpy", 1 << 40, "tiled"),
    ({"solver": "eigh", "kernel_cache": "never"}, "numpy", 1 << 40, "eigh"),
])
def test_how_the_curve_job_reaches_the_kernel(settings, backend, memory, operator):
    from rfw2s.plan import Student, choose_operator

    config = _validated({**load_tiny(), **settings})
    s = Student({"name": "relu_sphere", "d": 16}, 1024, 0)
    assert choose_operator(s, {k: config[k] for k in ("solver", "matrix_free", "kernel_cache")}, memory,
                           backend) == operator


@pytest.mark.parametrize("m_te, backend, operator, kernel_job", [
    (64, "numpy", "stored", "tiles"),  # d = 512: the kernel function and memory dominate
    (128, "numpy", "cached", "whole"),  # d = 1448: the product dominates; cached, built whole (syrk)
    (128, "cupy", "stored", "whole"),
])
def test_the_cpu_caches_a_kernel_where_its_product_dominates(m_te, backend, operator, kernel_job):
    from rfw2s.curves import PRODUCT_BOUND_DIM

    exp = dict(load_tiny()["experiments"]["tiny_model23"], m_te=[m_te])
    plan = _plan({"x": exp}, backend=backend)
    (key,) = plan.experiments["x"].curves
    recipe = plan.step("curves", key).recipe
    assert (recipe.d >= PRODUCT_BOUND_DIM) == (kernel_job == "whole")
    assert recipe.operator == operator and (recipe.kernel is not None) == (operator == "cached")
    if operator == "cached":
        assert plan.step("kernel", recipe.kernel).recipe.layout == kernel_job


def test_shared_steps_are_named_by_what_determines_them_whatever_the_order():
    tiny = load_tiny()["experiments"]["tiny"]
    same, more, later = copy.deepcopy(tiny), copy.deepcopy(tiny), copy.deepcopy(tiny)
    more["replicates"] = tiny["replicates"] + 1  # a curve job holds every replicate of its width
    later["t"]["max"] = 1e9
    first = _plan({"tiny": tiny, "same": same, "more": more, "later": later})
    reordered = _plan({"later": later, "more": more, "same": same, "tiny": tiny})
    for plan in (first, reordered):
        e = plan.experiments
        assert e["tiny"].curves == e["same"].curves
        assert not set(e["more"].curves) & set(e["tiny"].curves) and not set(e["later"].curves) & set(e["tiny"].curves)
        assert e["tiny"].teachers == e["same"].teachers == e["more"].teachers == e["later"].teachers
    assert {n: e.curves for n, e in first.experiments.items()} == {n: e.curves for n, e in reordered.experiments.items()}
    # Each key is the hash of its recipe: a step's recipe changes its name, nothing else does.
    alone = _plan({"tiny": tiny})
    assert alone.experiments["tiny"].curves == first.experiments["tiny"].curves
    assert all(k.startswith("relu_sphere-d16-m") for k in first.steps["curves"])


def test_the_key_changes_with_the_code_version_of_the_step():
    import rfw2s.plan as plan_module

    tiny = load_tiny()["experiments"]["tiny"]
    before = _plan({"tiny": tiny}, kernel_cache="always")
    keys = {kind: set(before.steps[kind]) for kind in ("teachers", "kernel", "curves")}
    for name, changed in (("KERNEL_VERSION", {"kernel", "curves"}), ("TEACHERS_VERSION", {"teachers", "curves"}),
                          ("CURVES_VERSION", {"curves"})):
        original = getattr(plan_module, name)
        setattr(plan_module, name, original + "-next")
        try:
            after = _plan({"tiny": tiny}, kernel_cache="always")
        finally:
            setattr(plan_module, name, original)
        for kind, old in keys.items():
            assert (set(after.steps[kind]) != old) == (kind in changed), (name, kind)


@pytest.mark.parametrize("path", ["config.yaml", "workflow/configs/extensions.yaml", "workflow/configs/datasets.yaml"])
def test_the_shipped_configs_are_valid_and_fit_this_machine(path):
    import yaml

    from workflow_helpers import REPO

    config = validate(yaml.safe_load((REPO / path).read_text()), SCHEMA)
    plan = Plan(config, target_of(memory=24 << 30))  # the CI machine's memory
    assert plan.experiments and all(e.curves for e in plan.experiments.values())
