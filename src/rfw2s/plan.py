"""The plan: every job a validated config asks for, each named by what determines it.

A shared step (teacher fits, a kernel, its eigendecomposition, a curve job) has a *recipe*:
everything its numbers depend on (models and their versions, seed, sizes, replicates, the
learning rule and its grid, the operator and solver settings, the version of the code that
computes it). Its *key* is a readable name and the first 12 hex digits of the recipe's
SHA-256, and its files live in ``results/cache/<step>/<key>/``. So two experiments that need
the same fit or curve share one file whatever their order in the config, and changing one
experiment's grid gives its curves a new key instead of touching a file another reads. The
job receives its recipe as its one description and records it in what it writes.

Experiment folders (``results/<experiment>/``) hold only that experiment's tables, figures
and validation. Before any job, the plan refuses what cannot run here: a student whose
solve would not fit in memory, or a dense eigendecomposition LAPACK cannot do.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from functools import cached_property

from . import config as configuration
from . import models
from .curves import CURVES_VERSION, KERNEL_VERSION, OPERATOR_FILES, PRODUCT_BOUND_DIM
from .resources import format_bytes, memory_needed
from .sample import SAMPLED_VERSION
from .solve import EIGH_VERSION, NUMPY_EIGH_MAX_N, TEACHERS_VERSION

RESULTS = "results"
CACHE = f"{RESULTS}/cache"
# Folders under results/ that the pipeline owns: no experiment may be named like one.
RESERVED_NAMES = ("cache",)
STEPS = ("teachers", "kernel", "eigh", "curves")
KEY_PATTERN = r"[A-Za-z0-9._-]+-[0-9a-f]{12}"


class PlanError(configuration.ConfigError):
    pass


def content_key(name: str, recipe: dict) -> str:
    """``name`` (readable) and 12 hex digits of the SHA-256 of the recipe's canonical JSON."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, eq=False)
class Step:
    kind: str  # one of STEPS
    name: str  # readable part of the key
    recipe: dict = field(repr=False)

    @cached_property
    def key(self) -> str:
        return content_key(self.name, self.recipe)

    def recipe_json(self) -> str:
        return json.dumps(self.recipe, sort_keys=True)


@dataclass(frozen=True)
class Student:
    spec: dict  # concrete model: name and build() arguments
    m_st: int
    seed: int

    @property
    def name(self) -> str:  # e.g. relu_sphere-d32-m16384-seed0 (readable; the key's hash identifies)
        def text(value):  # a nested parameter by its kind (the hash tells the rest)
            if isinstance(value, dict):
                return str(value.get("kind", "x"))
            return f"{value:.6g}" if isinstance(value, float) else str(value)

        params = "-".join(f"{k}{text(self.spec[k])}" for k in sorted(self.spec) if k != "name")
        return f"{self.spec['name']}-{params}-m{self.m_st}-seed{self.seed}"

    @property
    def d(self) -> int:
        return int(self.spec.get("d", 0))


@dataclass
class Experiment:
    name: str
    axes: list[str]  # the columns it sweeps (rfw2s.config.fit_axes): one fit per value of each
    teachers: str  # teacher key
    replicates: int
    curves: list[str]  # curve keys aggregated into its tables
    validation: dict | None = None  # recipe of its validation job
    degrees: dict | None = None  # recipe of its per-degree breakdown
    convergence: list[str] = field(default_factory=list)  # curve keys of the validation's widths
    sampled_operator: list[str] = field(default_factory=list)  # cached files of the sampled student
    shown: dict = field(default_factory=dict)  # the swept values Figures 2(a)/(b) show

    @property
    def folder(self) -> str:
        return f"{RESULTS}/{self.name}"

    @property
    def sweep(self) -> str | None:
        """The axis of the heatmap and exponent figures: student width, or sample size."""
        return next((axis for axis in ("m_st", "n") if axis in self.axes), None)

    @property
    def figures(self) -> list[str]:
        figures = ["fig2a", "fig2b"] + (["ablation_heatmap", "ablation_exponent"] if self.sweep else [])
        return figures + [name for name in ("validation", "degrees") if getattr(self, name)]

    @property
    def tables(self) -> list[str]:
        return ["losses", "summary", "fit"] + [name for name in ("validation", "degrees") if getattr(self, name)]


def kernel_job_layout(d: int) -> str:
    """How the kernel job builds the kernel it writes: ``whole`` (one symmetric product) when
    the matrix product dominates, else ``tiles`` (one tile of rows at a time)."""
    return "whole" if d >= PRODUCT_BOUND_DIM else "tiles"


def choose_operator(student: Student, settings: dict, memory: int, backend: str, n: int | None = None) -> str:
    """How the curve job reaches ``H`` (:data:`rfw2s.curves.OPERATORS`, or for a student on
    ``n`` inputs :data:`rfw2s.finite_sample.SAMPLE_OPERATORS`), decided once here.

    ``solver: eigh``: ``eigh`` (on samples: ``svd``). Lanczos: ``tiled`` where ``matrix_free``
    is ``always``, or ``auto`` and the kernel would take more than half of ``memory``; else a
    stored kernel, ``cached`` by a kernel job or ``stored`` in the curve job: ``kernel_cache:
    auto`` caches on the CPU when the feature dimension is at least PRODUCT_BOUND_DIM (building
    costs more than writing and reading back; a model without ``d``: always), never on a GPU.
    On samples the population kernel is stored (``krylov``) or tiled (``krylov-tiled``).
    """
    if settings["solver"] == "eigh":
        return "eigh" if n is None else "svd"
    choice = settings["matrix_free"]
    tiled = choice == "always" or (choice == "auto" and 8 * student.m_st**2 > memory / 2)
    if n is not None:
        return "krylov-tiled" if tiled else "krylov"
    if tiled:
        return "tiled"
    cache = settings["kernel_cache"]
    if cache == "auto":
        d = student.spec.get("d", PRODUCT_BOUND_DIM)
        cache = "never" if backend == "cupy" or d < PRODUCT_BOUND_DIM else "always"
    return "cached" if cache == "always" else "stored"


def memory_bytes(backend: str = "numpy") -> int:
    """Memory the solvers may use: the GPU's on ``cupy``, else this machine's."""
    if backend == "cupy":
        import cupy

        return int(cupy.cuda.Device().mem_info[1])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


class Plan:
    """Every step and experiment of a validated ``config`` (defaults filled), for a machine
    whose solvers run on ``backend`` (resolved: ``numpy`` or ``cupy``) with ``memory`` bytes."""

    def __init__(self, config: dict, backend: str = "numpy", memory: int | None = None):
        self.config = config
        self.backend = backend
        self.memory = memory_bytes(backend) if memory is None else memory
        self.settings = {k: config[k] for k in ("solver", "lanczos", "matrix_free", "kernel_cache")}
        self.steps: dict[str, dict[str, Step]] = {kind: {} for kind in STEPS}
        self.experiments: dict[str, Experiment] = {}
        problems = [f"experiments.{name}: the name is taken by the pipeline's folder {RESULTS}/{name}/; rename "
                    f"the experiment (reserved: {', '.join(RESERVED_NAMES)})"
                    for name in config["experiments"] if name in RESERVED_NAMES]
        for name, exp in config["experiments"].items():
            problems += self._plan_experiment(name, exp)
        if problems:
            raise PlanError("invalid config:\n  - " + "\n  - ".join(dict.fromkeys(problems)))

    # --- building ------------------------------------------------------------------
    def _add(self, step: Step) -> Step:
        return self.steps[step.kind].setdefault(step.key, step)

    def _teachers(self, exp: dict) -> Step:
        sizes = [int(m) for m in exp["m_te"]]
        specs = [configuration.model_spec(exp, m) for m in sizes]
        recipe = {"step": "teachers", "version": TEACHERS_VERSION, "model_version": models.model_version(exp["model"]),
                  "models": specs, "m_te": sizes, "seed": int(exp["seed"]), "samples": exp.get("teacher_samples"),
                  # Fits are at most M_TE x M_TE: under `auto` they stay on NumPy (a GPU's
                  # start-up would cost more than the fits).
                  "backend": "cupy" if self.config["backend"] == "cupy" else "numpy"}
        return self._add(Step("teachers", f"{exp['model']}-seed{exp['seed']}", recipe))

    def _students(self, exp: dict, widths=None) -> dict[str, tuple[Student, list[int]]]:
        """Students of an experiment (its own widths, or ``widths`` for every teacher) with the
        teacher sizes each serves, in config order."""
        groups: dict[str, tuple[Student, list[int]]] = {}
        for m_te in exp["m_te"]:
            spec = configuration.model_spec(exp, m_te)
            for m_st in configuration.student_widths(exp, spec) if widths is None else widths:
                s = Student(spec, int(m_st), int(exp["seed"]))
                sizes = groups.setdefault(s.name, (s, []))[1]
                if int(m_te) not in sizes:  # a width may be listed twice (convergence and sampled)
                    sizes.append(int(m_te))
        return groups

    def _operator_steps(self, student: Student, operator: str) -> dict[str, Step]:
        """The kernel (and eigendecomposition) steps a curve job through ``operator`` reads."""
        if operator not in ("cached", "eigh"):
            return {}
        kernel = self._add(Step("kernel", student.name, {
            "step": "kernel", "version": KERNEL_VERSION, "model": student.spec,
            "model_version": models.model_version(student.spec["name"]), "seed": student.seed,
            "m_st": student.m_st, "layout": kernel_job_layout(student.d), "backend": self.config["backend"]}))
        if operator == "cached":
            return {"kernel": kernel}
        eigh = self._add(Step("eigh", student.name, {"step": "eigh", "version": EIGH_VERSION, "kernel": kernel.key,
                                                     "backend": self.config["backend"]}))
        return {"kernel": kernel, "eigh": eigh}

    def _solve_recipe(self, student: Student, sizes: list[int], teachers: Step, exp_name: str,
                      samples: dict | None = None) -> tuple[dict, list[str]]:
        """What a solve on ``student`` (trained on ``samples``, or the population) for ``sizes``
        depends on, and the problems it would hit here."""
        n = None if samples is None else samples["n"]
        operator = choose_operator(student, self.settings, self.memory, self.backend, n)
        upstream = self._operator_steps(student, operator)
        recipe = {"model": student.spec, "model_version": models.model_version(student.spec["name"]),
                  "seed": student.seed, "m_st": student.m_st, "teachers": teachers.key, "m_te": sizes,
                  "samples": samples, "operator": operator, "backend": self.config["backend"],
                  "lanczos": None if operator in ("eigh", "svd") else dict(self.settings["lanczos"]),
                  **{name: step.key for name, step in upstream.items()}}
        return recipe, self._feasibility(exp_name, student, operator, len(sizes), n)

    def _feasibility(self, exp_name: str, student: Student, operator: str, n_teachers: int,
                     n: int | None = None) -> list[str]:
        where = "GPU" if self.backend == "cupy" else "machine"
        def needed(n_samples):
            return memory_needed(student.m_st, student.d, operator, n_teachers, self.settings["lanczos"]["max_steps"],
                                 n_samples)

        need = needed(n)
        if operator == "eigh" and self.backend == "numpy" and student.m_st > NUMPY_EIGH_MAX_N:
            return [f"experiments.{exp_name}: student width {student.m_st} exceeds LAPACK's dense eigh limit on the "
                    f"CPU (n <= {NUMPY_EIGH_MAX_N}); use solver: lanczos, a GPU, or a smaller m_st"]
        if need > self.memory:
            # The sample is to blame where the same student on one input would fit.
            small = n is not None and needed(1) <= self.memory
            key = f"experiments.{exp_name}" + (".samples.n" if small else "")
            trained = "" if n is None else f" trained on n = {n} inputs"
            return [f"{key}: student {student.name}{trained} needs about {format_bytes(need)} ({operator}), "
                    f"more than the {format_bytes(self.memory)} of this {where}"]
        return []

    def _curves(self, name: str, exp: dict, teachers: Step, widths=None, population: bool = False):
        """Curve steps of an experiment (one per student and sample size; ``population``: only
        the population's, as the validation compares), and the problems they would hit here."""
        keys, problems = [], []
        replicates = list(range(int(exp["replicates"])))
        sizes_n = [None] if population else configuration.sample_sizes(exp)
        for student, sizes in self._students(exp, widths).values():
            for n in sizes_n:
                samples = None if n is None else {"n": n, "seed": int(exp["samples"]["seed"])}
                solve, found = self._solve_recipe(student, sizes, teachers, name, samples)
                recipe = {"step": "curves", "version": CURVES_VERSION, **solve, "replicates": replicates,
                          "rules": configuration.learning_rules(exp)}
                name_n = student.name + ("" if n is None else f"-n{n}")
                keys.append(self._add(Step("curves", name_n, recipe)).key)
                problems += found
        return keys, problems

    def _plan_experiment(self, name: str, exp: dict) -> list[str]:
        teachers = self._teachers(exp)
        curves, problems = self._curves(name, exp, teachers)
        axes = configuration.fit_axes(exp)
        shown = {}
        if "m_st" in axes:
            shown["m_st"] = max(int(w) for w in exp["m_st"])
        if "n" in axes:
            shown["n"] = max(float("inf") if n is None else float(n) for n in configuration.sample_sizes(exp))
        if "rule" in axes:
            shown["rule"] = configuration.learning_rules(exp)[0]["name"]
        plan = Experiment(name, axes, teachers.key, int(exp["replicates"]), curves, shown=shown)
        validation = exp.get("validation")
        if validation:
            plan.convergence, found = self._curves(name, exp, teachers, validation["convergence_m_st"], population=True)
            problems += found
            student = Student(configuration.model_spec(exp, exp["m_te"][0]), int(validation["sampled"]["m_st"]),
                              int(exp["seed"]))
            solve, found = self._solve_recipe(student, [int(m) for m in exp["m_te"]], teachers, name)
            problems += found
            plan.validation = {"step": "validation", "version": SAMPLED_VERSION, "curves_version": CURVES_VERSION,
                               **solve, "sampled": validation["sampled"]}
            plan.sampled_operator = self.operator_files(plan.validation, [0])
        if "degrees" in exp:
            plan.degrees = {"step": "degrees", "version": CURVES_VERSION, "teachers": teachers.key,
                            "models": teachers.recipe["models"], "m_te": teachers.recipe["m_te"],
                            "replicates": list(range(int(exp["replicates"]))),
                            "rules": configuration.learning_rules(exp), "degrees": [int(k) for k in exp["degrees"]]}
        self.experiments[name] = plan
        return problems

    # --- paths (where every step's files go) ------------------------------------------
    @staticmethod
    def folder(kind: str, key: str) -> str:
        return f"{CACHE}/{kind}/{key}"

    def teacher_file(self, key: str, replicate: int) -> str:
        return f"{self.folder('teachers', key)}/r{replicate}.npz"

    def kernel_file(self, key: str, replicate: int) -> str:
        return f"{self.folder('kernel', key)}/gram_r{replicate}.npy"

    def eigh_files(self, key: str, replicate: int) -> dict[str, str]:
        return {name: f"{self.folder('eigh', key)}/{name}_r{replicate}.npy" for name in OPERATOR_FILES["eigh"]}

    def curves_file(self, key: str) -> str:
        return f"{self.folder('curves', key)}/curves.parquet"

    def operator_files(self, recipe: dict, replicates) -> list[str]:
        """The cached files a solve of ``recipe`` reads, replicate after replicate, each in the
        order of OPERATOR_FILES[operator] (:func:`rfw2s.cli.operator_files_by_replicate`
        splits them)."""
        files = []
        for r in replicates:
            if recipe["operator"] == "cached":
                files.append(self.kernel_file(recipe["kernel"], r))
            elif recipe["operator"] == "eigh":
                files += list(self.eigh_files(recipe["eigh"], r).values())
        return files

    # --- what a rule needs ----------------------------------------------------------
    def step(self, kind: str, key: str) -> Step:
        return self.steps[kind][key]

    def curve_inputs(self, key: str) -> dict[str, list[str]]:
        recipe = self.step("curves", key).recipe
        return {"teachers": [self.teacher_file(recipe["teachers"], r) for r in recipe["replicates"]],
                "operator": self.operator_files(recipe, recipe["replicates"])}

    def experiment_curves(self, name: str) -> list[str]:
        return [self.curves_file(k) for k in self.experiments[name].curves]

    def validation_inputs(self, name: str) -> dict[str, list[str] | str]:
        exp = self.experiments[name]
        return {"losses": f"{exp.folder}/losses.parquet", "teachers": [self.teacher_file(exp.teachers, 0)],
                "convergence": [self.curves_file(k) for k in exp.convergence], "operator": exp.sampled_operator}

    def degree_inputs(self, name: str) -> list[str]:
        exp = self.experiments[name]
        return [self.teacher_file(exp.teachers, r) for r in exp.degrees["replicates"]]

    def outputs(self, names=None) -> list[str]:
        """Every final file of the experiments ``names`` (default: all)."""
        out = []
        for name in self.experiments if names is None else names:
            exp = self.experiments[name]
            out += [f"{exp.folder}/{table}.parquet" for table in exp.tables]
            out += [f"{exp.folder}/figures/{f}.{ext}" for f in exp.figures for ext in ("png", "pdf")]
        return out

    def _solve_of(self, kind: str, recipe: dict) -> tuple[Student, str, int, int | None]:
        """The student, operator, teacher count and sample size of a kernel, eigh, curve or
        validation recipe (for its memory and time limits)."""
        if kind == "eigh":
            recipe = self.step("kernel", recipe["kernel"]).recipe
        student = Student(recipe["model"], recipe["m_st"], recipe["seed"])
        if kind in ("kernel", "eigh"):
            operator = "eigh" if kind == "eigh" else "stored" if recipe["layout"] == "whole" else "tiled"
            return student, operator, 0, None
        return student, recipe["operator"], len(recipe["m_te"]), (recipe.get("samples") or {}).get("n")

    def memory_mb(self, kind: str, recipe: dict) -> int:
        """A job's peak memory (the estimates the feasibility check uses) plus 1 GiB for the
        interpreter and libraries."""
        student, operator, teachers, n = self._solve_of(kind, recipe)
        max_steps = self.settings["lanczos"]["max_steps"] if teachers else 0
        return 1024 + memory_needed(student.m_st, student.d, operator, teachers, max_steps, n) // 2**20

    def runtime_min(self, kind: str, recipe: dict) -> int:
        """A generous time limit in minutes from the student's width (CPU scaling: dense eigh
        ~ M^3, measured 9 min at 16384 on 2 cores; the other steps ~ M^2)."""
        student, operator, _, n = self._solve_of(kind, recipe)
        M = student.m_st
        scale = (M / 16384) ** 3 * 30 if kind == "eigh" else (M / 16384) ** 2 * 20
        if n is not None:  # a pass over the sample's features per step, or their SVD
            scale += (n * M / 16384**2) * (60 if operator == "svd" else 20)
        return int(15 + scale)

    def tables_recipe(self, name: str) -> dict:
        from .analysis import TABLES_VERSION  # here: pandas is not needed to plan

        return {"version": TABLES_VERSION, "fit_by": self.experiments[name].axes}
