"""The plan: every step a validated config asks for, each named by what determines it.

A shared step (teacher fits, a kernel, its eigendecomposition, a curve job) has a typed
*recipe* (:mod:`rfw2s.recipes`): everything its numbers depend on. Its *key* names its folder
``results/cache/<step>/<key>/`` (:mod:`rfw2s.paths`), so two experiments that need the same fit
or curve share one file whatever their order in the config, and changing one experiment's grid
gives its curves a new key instead of touching a file another reads.

The plan is a pure function of the config and its resolved target (:class:`rfw2s.target.Target`:
what the GPU rules compute on, how much memory a job may plan for), never of the machine that
builds it: the operator each student is solved through, the memory each job reserves, and what
cannot run are decided here, once, from those two. Before any job, it refuses what cannot run
on the target: a student whose solve would not fit in the declared memory, or a dense
eigendecomposition LAPACK cannot do.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import config as configuration
from . import models
from .curves import CURVES_VERSION, KERNEL_VERSION, PRODUCT_BOUND_DIM, kernel_layout
from .operators import OPERATORS
from .paths import RESERVED_NAMES, RESULTS
from .recipes import (NUMPY, CurvesRecipe, DegreesRecipe, EighRecipe, KernelRecipe, Recipe, SolveRecipe,
                      TablesRecipe, TeachersRecipe, ValidationRecipe)
from .resources import eigh_memory, format_bytes, kernel_memory, recipe_memory, runtime_minutes
from .sample import SAMPLED_VERSION
from .solve import EIGH_VERSION, NUMPY_EIGH_MAX_N, TEACHERS_VERSION
from .target import Target

STEPS = ("teachers", "kernel", "eigh", "curves")
# The steps that compute where the target says (rules with resources gpu=1); the others run NumPy.
GPU_STEPS = ("kernel", "eigh", "curves", "validation")
# Memory a job needs beyond its arrays: the interpreter and its libraries.
JOB_OVERHEAD_MB = 1024


class PlanError(configuration.ConfigError):
    pass


@dataclass(frozen=True, eq=False)
class Step:
    kind: str  # one of STEPS
    name: str  # readable part of the key
    recipe: Recipe = field(repr=False)

    @property
    def key(self) -> str:
        return self.recipe.key(self.name)


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
    tables_recipe: TablesRecipe
    validation: ValidationRecipe | None = None
    degrees: DegreesRecipe | None = None
    convergence: list[str] = field(default_factory=list)  # curve keys of the validation's widths
    shown: dict = field(default_factory=dict)  # the swept values Figures 2(a)/(b) show
    classification: bool = False  # its target has classes: accuracies, and their figure

    @property
    def sweep(self) -> str | None:
        """The axis of the heatmap and exponent figures: student width, or sample size."""
        return next((axis for axis in ("m_st", "n") if axis in self.axes), None)

    @property
    def figures(self) -> list[str]:
        figures = ["fig2a", "fig2b", "pgr"] + (["ablation_heatmap", "ablation_exponent"] if self.sweep else [])
        figures += ["accuracy"] if self.classification else []
        return figures + [name for name in ("validation", "degrees") if getattr(self, name)]

    @property
    def tables(self) -> list[str]:
        return ["losses", "summary", "fit"] + [name for name in ("validation", "degrees") if getattr(self, name)]


def choose_operator(student: Student, settings: dict, memory: int, backend: str, n: int | None = None,
                    split: dict | None = None) -> str:
    """How the curve job reaches ``H`` (the operator table, :data:`rfw2s.operators.OPERATORS`),
    decided once here, from the
    config's ``settings``, the target's ``backend`` and the ``memory`` it declares.

    ``solver: eigh``: ``eigh`` (on samples: ``svd``). Lanczos: ``tiled`` where ``matrix_free``
    is ``always``, or ``auto`` and the kernel would take more than half of ``memory``; else a
    stored kernel, ``cached`` by a kernel job or ``stored`` in the curve job: ``kernel_cache:
    auto`` caches on the CPU when the feature dimension is at least PRODUCT_BOUND_DIM (building
    costs more than writing and reading back; a model without ``d``: always), never on a GPU.
    On samples the population kernel is stored (``krylov``) or tiled (``krylov-tiled``). A dataset
    with fewer rows than the student has features, or any ``split`` of one: ``dual`` (the rows'
    kernel, every route's numbers at ``N^2 M``).
    """
    rows = student.spec.get("rows") if student.spec["name"] == "dataset" else None
    if rows is not None and (split is not None or rows < student.m_st):
        return "dual"
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


class Plan:
    """Every step and experiment of a validated ``config`` (defaults filled) for ``target``."""

    def __init__(self, config: dict, target: Target):
        self.config = config
        self.target = target
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

    @property
    def backend(self) -> str:
        """What the GPU steps compute on."""
        return self.target.backend

    # --- building ------------------------------------------------------------------
    def _add(self, step: Step) -> Step:
        return self.steps[step.kind].setdefault(step.key, step)

    def _teachers(self, exp: dict) -> Step:
        sizes = [int(m) for m in exp["m_te"]]
        recipe = TeachersRecipe(version=TEACHERS_VERSION, model_version=models.model_version(exp["model"]),
                                models=[configuration.model_spec(exp, m) for m in sizes], m_te=sizes,
                                seed=int(exp["seed"]), samples=exp.get("teacher_samples"), split=exp.get("split"))
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

    def _operator_steps(self, student: Student, operator: str) -> dict[str, str]:
        """The keys of the kernel (and eigendecomposition) steps a solve through ``operator`` reads."""
        if operator not in ("cached", "eigh"):
            return {}
        kernel = self._add(Step("kernel", student.name, KernelRecipe(
            version=KERNEL_VERSION, model=student.spec, model_version=models.model_version(student.spec["name"]),
            seed=student.seed, m_st=student.m_st, layout=kernel_layout(student.d), backend=self.backend)))
        if operator == "cached":
            return {"kernel": kernel.key}
        eigh = self._add(Step("eigh", student.name, EighRecipe(version=EIGH_VERSION, kernel=kernel.key,
                                                                 backend=self.backend)))
        return {"kernel": kernel.key, "eigh": eigh.key}

    def _solve(self, student: Student, sizes: list[int], teachers: Step, samples: dict | None = None,
               split: dict | None = None) -> dict:
        """The fields of a solve on ``student`` (trained on ``samples``, a ``split`` of a dataset's
        rows, or the population) for ``sizes``."""
        n = None if samples is None else samples["n"]
        operator = choose_operator(student, self.settings, self.target.memory(self.backend), self.backend, n, split)
        return dict(model=student.spec, model_version=models.model_version(student.spec["name"]), seed=student.seed,
                    m_st=student.m_st, teachers=teachers.key, m_te=sizes, samples=samples, operator=operator,
                    backend=self.backend, split=split,
                    lanczos=dict(self.settings["lanczos"]) if OPERATORS[operator].lanczos else None,
                    **self._operator_steps(student, operator))

    def _feasibility(self, exp_name: str, recipe: SolveRecipe) -> list[str]:
        """What stops the solve of ``recipe`` and the steps it reads on the target, if anything."""
        M, n = recipe.m_st, recipe.n
        if recipe.operator == "eigh" and self.backend == NUMPY and M > NUMPY_EIGH_MAX_N:
            return [f"experiments.{exp_name}: student width {M} exceeds LAPACK's dense eigh limit on the "
                    f"CPU (n <= {NUMPY_EIGH_MAX_N}); use solver: lanczos, a GPU, or a smaller m_st"]
        if recipe.operator == "dual" and self.backend == NUMPY and recipe.rows > NUMPY_EIGH_MAX_N:
            return [f"experiments.{exp_name}.source: {recipe.rows} rows exceed LAPACK's dense eigh limit on the CPU "
                    f"(at most {NUMPY_EIGH_MAX_N} rows for a student wider than the dataset); use a GPU, a student "
                    "narrower than the rows, or fewer rows"]
        need = max([self.memory(recipe)] + [self.memory(self.step(kind, getattr(recipe, kind)).recipe)
                                            for kind in ("kernel", "eigh") if getattr(recipe, kind)])
        memory = self.target.memory(self.backend)
        if need > memory:
            # The sample is to blame where the same student on one input would fit.
            small = n is not None and self.memory(recipe, n=1) <= memory
            key = f"experiments.{exp_name}" + (".samples.n" if small else "")
            trained = "" if n is None else f" trained on n = {n} inputs"
            return [f"{key}: student {Student(recipe.model, M, recipe.seed).name}{trained} needs about "
                    f"{format_bytes(need)} ({recipe.operator}), more than {self.target.describe_memory(self.backend)}"]
        return []

    def _curves(self, name: str, exp: dict, teachers: Step, widths=None, population: bool = False):
        """Curve steps of an experiment (one per student and sample size; ``population``: only
        the population's, as the validation compares), and the problems they would hit."""
        keys, problems = [], []
        replicates = list(range(int(exp["replicates"])))
        sizes_n = [None] if population else configuration.sample_sizes(exp)
        for student, sizes in self._students(exp, widths).values():
            for n in sizes_n:
                samples = None if n is None else {"n": n, "seed": int(exp["samples"]["seed"])}
                recipe = CurvesRecipe(version=CURVES_VERSION, replicates=replicates,
                                      learning_rules=configuration.learning_rules(exp),
                                      **self._solve(student, sizes, teachers, samples, exp.get("split")))
                name_n = student.name + ("" if n is None else f"-n{n}")
                keys.append(self._add(Step("curves", name_n, recipe)).key)
                problems += self._feasibility(name, recipe)
        return keys, problems

    def _plan_experiment(self, name: str, exp: dict) -> list[str]:
        teachers = self._teachers(exp)
        curves, problems = self._curves(name, exp, teachers)
        axes = configuration.fit_axes(exp)
        shown, chosen = {}, exp.get("show") or {}
        if "m_st" in axes:
            shown["m_st"] = int(chosen.get("m_st", max(int(w) for w in exp["m_st"])))
        if "n" in axes:
            shown["n"] = float(chosen["n"]) if "n" in chosen else max(
                float("inf") if n is None else float(n) for n in configuration.sample_sizes(exp))
        if "rule" in axes:
            shown["rule"] = configuration.learning_rules(exp)[0]["name"]
        from .analysis import TABLES_VERSION  # here: pandas is not needed to plan

        target = configuration.model_spec(exp, exp["m_te"][0]).get("target")
        plan = Experiment(name, axes, teachers.key, int(exp["replicates"]), curves,
                          TablesRecipe(version=TABLES_VERSION, fit_by=axes), shown=shown,
                          classification=exp["model"] == "dataset" and target["kind"] in ("one_hot", "binary"))
        validation = exp.get("validation")
        if validation:
            plan.convergence, found = self._curves(name, exp, teachers, validation["convergence_m_st"], population=True)
            problems += found
            student = Student(configuration.model_spec(exp, exp["m_te"][0]), int(validation["sampled"]["m_st"]),
                              int(exp["seed"]))
            plan.validation = ValidationRecipe(version=SAMPLED_VERSION, curves_version=CURVES_VERSION,
                                               sampled=validation["sampled"],
                                               **self._solve(student, [int(m) for m in exp["m_te"]], teachers))
            problems += self._feasibility(name, plan.validation)
        if "degrees" in exp:
            plan.degrees = DegreesRecipe(version=CURVES_VERSION, teachers=teachers.key, models=teachers.recipe.models,
                                         m_te=teachers.recipe.m_te, replicates=list(range(int(exp["replicates"]))),
                                         learning_rules=configuration.learning_rules(exp),
                                         degrees=[int(k) for k in exp["degrees"]])
        self.experiments[name] = plan
        return problems

    # --- what a step's job reserves ----------------------------------------------------
    def step(self, kind: str, key: str) -> Step:
        return self.steps[kind][key]

    def memory(self, recipe: Recipe, n: int | None = None) -> int:
        """Peak bytes of the job of ``recipe`` (``n``: as if trained on that many inputs)."""
        if isinstance(recipe, KernelRecipe):
            return kernel_memory(recipe.m_st, int(recipe.model.get("d", 0)), recipe.layout)
        if isinstance(recipe, EighRecipe):
            return eigh_memory(self.step("kernel", recipe.kernel).recipe.m_st)
        if isinstance(recipe, SolveRecipe):
            return recipe_memory(recipe, n)
        return 0

    def memory_mb(self, recipe: Recipe) -> int:
        """The job's memory request: its peak plus the interpreter's."""
        return JOB_OVERHEAD_MB + self.memory(recipe) // 2**20

    def runtime_min(self, recipe: Recipe) -> int:
        """The job's time limit in minutes."""
        if isinstance(recipe, EighRecipe):
            return runtime_minutes("eigh", self.step("kernel", recipe.kernel).recipe.m_st)
        if isinstance(recipe, SolveRecipe):
            return runtime_minutes(recipe.step, recipe.m_st, recipe.operator, recipe.n)
        return runtime_minutes(recipe.step, recipe.m_st)
