"""The config: its schema (composed with each model's parameters), the checks the schema
cannot express, and the plan of students and curves an experiment asks for.

Each curve is a (teacher size ``m_te``, student width ``m_st``) pair. Its student is
identified by the concrete model, the width and the seed (:func:`student_key`), not by the
experiment, so two experiments with the same draws share one cached kernel and
eigendecomposition.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass

import numpy as np

from . import models
from .resources import format_bytes
from .curves import PRODUCT_BOUND_DIM, TILE_ROWS
from .solve import NUMPY_EIGH_MAX_N

# Keys every experiment may have; all others are the model's own parameters.
COMMON_KEYS = ("model", "m_st", "m_te", "replicates", "seed", "t", "validation", "gpu_only")

# Peak memory of a dense float64 eigendecomposition, in units of one M x M matrix
# (input copy, eigenvectors, LAPACK divide-and-conquer workspace): measured 4.9 for
# numpy.linalg.eigh at M = 16384 (9.7 GiB resident).
DENSE_EIGH_MATRICES = 5


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Student:
    key: str  # cache folder name, e.g. relu_sphere-d32-m16384-seed0
    spec: dict  # concrete model: name and build() arguments
    m_st: int
    seed: int


@dataclass(frozen=True)
class Curve:
    m_te: int
    m_st: int
    student: Student


def normalize(config: dict) -> dict:
    """Read YAML 1.1 exponent literals without a sign (``1.0e2``, which PyYAML leaves as
    strings) as numbers; anything else is left for the schema to judge."""
    for exp in (config.get("experiments") or {}).values():
        if not isinstance(exp, dict):
            continue
        validation = exp.get("validation")
        sampled = validation.get("sampled") if isinstance(validation, dict) else None
        for node, keys in ((exp.get("t"), ("min", "max")), (sampled, ("t_max",))):
            if not isinstance(node, dict):
                continue
            for key in keys:
                if isinstance(node.get(key), str):
                    try:
                        node[key] = float(node[key])
                    except ValueError:
                        pass
    return config


def compose_schema(base: dict) -> dict:
    """The config schema with every registered model's parameters: ``model`` must name a
    registered model, and an experiment may carry only that model's parameters (typed by
    the model's own ``PARAMETERS``)."""
    schema = copy.deepcopy(base)
    experiment = schema["properties"]["experiments"]["additionalProperties"]
    experiment["properties"]["model"]["enum"] = sorted(models.REGISTRY)
    rules = []
    for name, module in sorted(models.REGISTRY.items()):
        for param in module.PARAMETERS:
            experiment["properties"].setdefault(param, {})
        accepted = list(COMMON_KEYS) + list(module.PARAMETERS)
        rules.append({
            "if": {"properties": {"model": {"const": name}}, "required": ["model"]},
            "then": {"properties": module.PARAMETERS, "required": list(module.REQUIRED),
                     "propertyNames": {"enum": accepted}},
        })
    experiment["allOf"] = rules
    return schema


def time_grid(t: dict) -> np.ndarray:
    """The log-spaced gradient-flow times ``{min, max, num}`` (both ends included)."""
    return np.geomspace(float(t["min"]), float(t["max"]), int(t["num"]))


def model_params(experiment: dict) -> dict:
    return {k: v for k, v in experiment.items() if k not in COMMON_KEYS}


def model_spec(experiment: dict, m_te: int) -> dict:
    """The concrete model (name and ``build`` arguments) used with teacher size ``m_te``."""
    return models.specialize(experiment["model"], model_params(experiment), int(m_te))


def is_ablation(experiment: dict) -> bool:
    """An experiment over several student widths per teacher (``m_st`` a list)."""
    return isinstance(experiment["m_st"], list)


def student_widths(experiment: dict, spec: dict) -> list[int]:
    m_st = experiment["m_st"]
    if isinstance(m_st, dict):  # {d_factor: f}: M_ST = round(f * d) of the concrete model
        return [int(round(m_st["d_factor"] * spec["d"]))]
    return [int(m) for m in (m_st if isinstance(m_st, list) else [m_st])]


def student_key(spec: dict, m_st: int, seed: int) -> str:
    params = "-".join(f"{k}{spec[k]}" for k in sorted(spec) if k != "name")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{spec['name']}-{params}-m{m_st}-seed{seed}")


def student(experiment: dict, m_te: int, m_st: int) -> Student:
    spec = model_spec(experiment, m_te)
    seed = int(experiment["seed"])
    return Student(student_key(spec, m_st, seed), spec, int(m_st), seed)


def plan(experiment: dict) -> list[Curve]:
    """Every (m_te, m_st) curve of an experiment, in config order."""
    curves = []
    for m_te in experiment["m_te"]:
        spec = model_spec(experiment, m_te)
        curves += [Curve(int(m_te), m, student(experiment, m_te, m)) for m in student_widths(experiment, spec)]
    return curves


def student_groups(experiment: dict, widths=None) -> dict[str, tuple[Student, list[int]]]:
    """Students of an experiment (or of its teachers at other ``widths``) with the teacher
    sizes that train each: one curve job per student draw serves all of them."""
    pairs = [(c.m_te, c.m_st) for c in plan(experiment)] if widths is None else [
        (m_te, m_st) for m_st in widths for m_te in experiment["m_te"]]
    groups: dict[str, tuple[Student, list[int]]] = {}
    for m_te, m_st in pairs:
        s = student(experiment, m_te, m_st)
        sizes = groups.setdefault(s.key, (s, []))[1]
        if int(m_te) not in sizes:  # a width may be listed twice (convergence and sampled)
            sizes.append(int(m_te))
    return groups


def curve_jobs(experiments: dict) -> dict[tuple[str, str], tuple[Student, list[int]]]:
    """``(experiment, student key) -> (student, teacher sizes)``: one curve job per student
    draw, for each experiment's plan and its validation widths."""
    jobs = {}
    for name, exp in experiments.items():
        widths = [None]
        if "validation" in exp:  # the convergence panel's and the sampled check's students
            widths.append(list(exp["validation"]["convergence_m_st"]) + [exp["validation"]["sampled"]["m_st"]])
        for w in widths:
            for key, group in student_groups(exp, w).items():
                jobs.setdefault((name, key), group)
    return jobs


def teacher_signature(experiment: dict, m_te: int) -> tuple:
    """What a teacher fit depends on: its concrete model, seed and size."""
    return spec_json(model_spec(experiment, m_te)), int(experiment["seed"]), int(m_te)


def owners(experiments: dict, jobs: dict) -> tuple[dict, dict]:
    """Which experiment computes each teacher and each curve job: the first one (in config
    order) with the same inputs, so experiments that overlap (fig2 and width_ablation at
    16384) share the work. A curve job computes every replicate of its draw width, so only
    experiments with as many replicates share it. Returns ``{(experiment, m_te): owner}``
    and ``{(experiment, student key): owner}``."""
    first: dict = {}
    teacher_owner = {(name, int(m)): first.setdefault(("teacher",) + teacher_signature(exp, m), name)
                     for name, exp in experiments.items() for m in exp["m_te"]}
    curve_owner = {}
    for (name, key), (_, sizes) in jobs.items():
        exp = experiments[name]
        signature = ("curves", key, tuple(sorted(teacher_signature(exp, m) for m in sizes)),
                     json.dumps(exp["t"], sort_keys=True), int(exp["replicates"]))
        curve_owner[(name, key)] = first.setdefault(signature, name)
    return teacher_owner, curve_owner


SOLVER_DEFAULTS = {"solver": "lanczos", "lanczos": {"tol": 1e-10, "max_steps": 400}, "matrix_free": "auto",
                   "kernel_cache": "auto"}


def solver_settings(config: dict) -> dict:
    settings = {k: config.get(k, v) for k, v in SOLVER_DEFAULTS.items()}
    settings["lanczos"] = {**SOLVER_DEFAULTS["lanczos"], **settings["lanczos"]}
    return settings


def kernel_job_layout(d: int) -> str:
    """How the kernel job holds the kernel it writes: whole (``built``: one symmetric
    product) when the product dominates, else one tile of rows at a time (``matrix_free``)."""
    return "built" if d >= PRODUCT_BOUND_DIM else "matrix_free"


def operator(s: Student, settings: dict, memory: int, backend: str = "numpy") -> str:
    """How the curve job reaches ``H``: ``eigh`` (cached eigendecomposition), ``dense``
    (Lanczos on the cached kernel), ``built`` (Lanczos on the kernel built in the job, not
    cached) or ``matrix_free`` (Lanczos on tiles; chosen automatically when the kernel would
    take more than half of ``memory``). ``kernel_cache: auto`` caches on the CPU when the
    feature dimension is at least :data:`PRODUCT_BOUND_DIM` (a model without ``d``:
    always), never on a GPU."""
    if settings["solver"] == "eigh":
        return "eigh"
    choice = settings["matrix_free"]
    if choice == "always" or (choice == "auto" and 8 * s.m_st**2 > memory / 2):
        return "matrix_free"
    cache = settings["kernel_cache"]
    if cache == "auto":
        cache = "never" if backend == "cupy" or s.spec.get("d", PRODUCT_BOUND_DIM) < PRODUCT_BOUND_DIM else "always"
    return "dense" if cache == "always" else "built"


def memory_needed(M: int, d: int, how: str, n_teachers: int, max_steps: int) -> int:
    """Peak bytes (estimate, float64) of the heaviest job of an ``M``-wide student in
    dimension ``d`` solved as ``how`` (``eigh``, ``dense``, ``built`` or ``matrix_free``)."""
    features = 8 * M * d
    krylov = 8 * max_steps * M * (n_teachers + 1) if how != "eigh" else 0  # the Lanczos basis
    if how == "eigh":
        return DENSE_EIGH_MATRICES * 8 * M**2 + features
    if how in ("dense", "built"):
        return 8 * M**2 + krylov + features
    return 8 * min(M, TILE_ROWS) * M * 4 + krylov + features  # a tile and its temporaries


def spec_json(spec: dict) -> str:
    return json.dumps(spec, sort_keys=True)


def memory_bytes(backend: str = "numpy") -> int:
    """Memory the solvers may use: the GPU's on ``cupy``, else this machine's."""
    if backend == "cupy":
        import cupy

        return int(cupy.cuda.Device().mem_info[1])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def drop_gpu_only(config: dict, backend: str) -> list[str]:
    """Remove experiments marked ``gpu_only`` when no GPU is usable (unless the config
    asks to run them anyway); returns the names removed."""
    if backend == "cupy" or config.get("run_gpu_only_on_cpu", False):
        return []
    skipped = [n for n, e in config["experiments"].items() if e.get("gpu_only", False)]
    for name in skipped:
        del config["experiments"][name]
    return skipped


def check(config: dict, backend: str = "numpy", memory: int | None = None) -> None:
    """Raise :class:`ConfigError` listing every semantic problem in ``config``.

    ``backend`` is the resolved array library; on ``numpy`` a student wider than LAPACK's
    eigh limit, or whose dense eigendecomposition would not fit in ``memory`` (default:
    this machine's), is refused with the size it needs.
    """
    problems = []
    experiments = config.get("experiments") or {}
    if not experiments:
        problems.append("experiments: at least one experiment is required")
    memory = memory_bytes(backend) if memory is None else memory
    settings = solver_settings(config)
    where = "GPU" if backend == "cupy" else "machine"
    for name, exp in experiments.items():
        key = f"experiments.{name}"
        m_te = exp.get("m_te") or []
        if len(set(m_te)) != len(m_te):
            problems.append(f"{key}.m_te: teacher sizes must be distinct; got {m_te}")
        t = exp.get("t", {})
        if t.get("min", 0) >= t.get("max", 0):
            problems.append(f"{key}.t: need 0 < min < max; got min={t.get('min')}, max={t.get('max')}")
        try:
            curves = plan(exp)
        except ValueError as exc:
            problems.append(f"{key}: {exc}")
            continue
        too_big = sorted({c.m_te for c in curves if c.m_te >= c.m_st})
        if too_big:
            widths = sorted({c.m_st for c in curves})
            problems.append(f"{key}.m_te: every teacher size must be smaller than m_st = "
                            f"{widths[0] if len(widths) == 1 else widths}; got {too_big}")
        for s, teachers in student_groups(exp).values():
            how = operator(s, settings, memory, backend)
            need = memory_needed(s.m_st, s.spec.get("d", 0), how, len(teachers), settings["lanczos"]["max_steps"])
            if how == "eigh" and backend == "numpy" and s.m_st > NUMPY_EIGH_MAX_N:
                problems.append(f"{key}: student width {s.m_st} exceeds LAPACK's dense eigh limit on the CPU "
                                f"(n <= {NUMPY_EIGH_MAX_N}); use solver: lanczos, a GPU, or a smaller m_st")
            elif need > memory:
                problems.append(f"{key}: student {s.key} needs about {format_bytes(need)} ({how}), more than "
                                f"the {format_bytes(memory)} of this {where}")
        validation = exp.get("validation")
        if validation and m_te:
            if is_ablation(exp) or isinstance(exp["m_st"], dict):
                problems.append(f"{key}.validation: needs a single integer m_st")
            if any(model_spec(exp, m) != model_spec(exp, m_te[0]) for m in m_te):
                problems.append(f"{key}.validation: needs a model that does not change with the teacher size")
            widths = list(validation.get("convergence_m_st", [])) + [validation.get("sampled", {}).get("m_st")]
            small = [w for w in widths if w is not None and w <= max(m_te)]
            if small:
                problems.append(f"{key}.validation: student widths must exceed the largest m_te = {max(m_te)}; "
                                f"got {small}")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
