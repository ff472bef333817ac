"""The contract between the plan and its jobs: one typed recipe per step.

A recipe holds everything a step's numbers depend on (models and their versions, seed, sizes,
the learning rules and their grids, the operator and solver settings, where it computes, the
version of the code that computes it), and nothing else: no path, no memory figure, never the
word ``auto``. The plan (:mod:`rfw2s.plan`) makes them; its key is a readable name and the first
12 hex digits of the SHA-256 of the recipe's canonical JSON (:func:`content_key`). A job receives
its recipe as that JSON (``--recipe``), reads it back with :func:`parse` and records it in what
it writes. Both sides import these classes: a field is read by its name.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

# Where a job computes: the GPU rules (kernel, eigh, curves, validation) as the plan's target
# says; everything else on NumPy, always.
NUMPY = "numpy"


def content_key(name: str, recipe: dict) -> str:
    """``name`` (readable) and 12 hex digits of the SHA-256 of the recipe's canonical JSON."""
    text = json.dumps(recipe, sort_keys=True, separators=(",", ":"))
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, kw_only=True)
class Recipe:
    step: ClassVar[str]

    def as_dict(self) -> dict:
        """The recipe as plain JSON values, with the step it is for."""
        return {"step": self.step, **json.loads(json.dumps(asdict(self)))}

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True)

    def key(self, name: str) -> str:
        return content_key(name, self.as_dict())


@dataclass(frozen=True, kw_only=True)
class TeachersRecipe(Recipe):
    """Every teacher size of an experiment, fitted per replicate (one job each)."""

    step: ClassVar[str] = "teachers"
    version: str
    model_version: str
    models: list  # the concrete model (name and build() arguments) of each teacher size
    m_te: list  # teacher sizes, in config order
    seed: int
    samples: dict | None  # {n, seed, ridge}: fitted on n inputs; None: on the population
    split: dict | None = None  # {teacher, student, test} fractions of a dataset's rows: fitted on the teacher's
    backend: str = NUMPY  # fits are at most M_TE x M_TE: always NumPy


@dataclass(frozen=True, kw_only=True)
class KernelRecipe(Recipe):
    """A student draw's feature-kernel matrix, written to the cache."""

    step: ClassVar[str] = "kernel"
    version: str
    model: dict
    model_version: str
    seed: int
    m_st: int
    layout: str  # how it is built: "whole" (one symmetric product) or "tiles" (rfw2s.curves.kernel_layout)
    backend: str


@dataclass(frozen=True, kw_only=True)
class EighRecipe(Recipe):
    """The dense eigendecomposition of a cached kernel."""

    step: ClassVar[str] = "eigh"
    version: str
    kernel: str  # the key of the kernel step
    backend: str


@dataclass(frozen=True, kw_only=True)
class SolveRecipe(Recipe):
    """A solve of one student draw's curves for some teachers: what curve and validation jobs share."""

    model: dict
    model_version: str
    seed: int
    m_st: int
    teachers: str  # the key of the teachers step
    m_te: list  # the teacher sizes this student serves
    samples: dict | None  # {n, seed}: trained on n inputs; None: on the population
    operator: str  # how the job reaches the kernel (rfw2s.operators.OPERATORS)
    backend: str
    lanczos: dict | None  # {tol, max_steps} for the Lanczos operators
    kernel: str | None = None  # the key of the kernel step it reads (operators cached and eigh)
    eigh: str | None = None  # the key of the eigh step it reads (operator eigh)
    split: dict | None = None  # {teacher, student, test} fractions of a dataset's rows (operator dual)

    @property
    def d(self) -> int:
        return int(self.model.get("d", 0))

    @property
    def n(self) -> int | None:
        """The inputs the student is trained on, drawn (None: the population, or a dataset's rows)."""
        return None if self.samples is None else int(self.samples["n"])

    @property
    def rows(self) -> int | None:
        """The dataset rows the population is made of (None: a model with a closed-form population)."""
        return self.model.get("rows") if self.model["name"] == "dataset" else None


@dataclass(frozen=True, kw_only=True)
class CurvesRecipe(SolveRecipe):
    """Every replicate's draw of one student width (and sample size): its curves."""

    step: ClassVar[str] = "curves"
    version: str
    replicates: list
    learning_rules: list  # {name, grid: {min, max, num}, parameters...} each


@dataclass(frozen=True, kw_only=True)
class ValidationRecipe(SolveRecipe):
    """The three-way check of one experiment (sampled-data training of replicate 0's draw)."""

    step: ClassVar[str] = "validation"
    version: str
    curves_version: str
    sampled: dict


@dataclass(frozen=True, kw_only=True)
class DegreesRecipe(Recipe):
    """The infinite-width loss of an experiment's teachers, degree by degree."""

    step: ClassVar[str] = "degrees"
    version: str
    teachers: str
    models: list
    m_te: list
    replicates: list
    learning_rules: list
    degrees: list
    backend: str = NUMPY


@dataclass(frozen=True, kw_only=True)
class TablesRecipe(Recipe):
    """An experiment's loss, summary and fit tables from its curve tables."""

    step: ClassVar[str] = "tables"
    version: str
    fit_by: list  # the swept columns: one fit per value of each
    backend: str = NUMPY


RECIPES = {cls.step: cls for cls in (TeachersRecipe, KernelRecipe, EighRecipe, CurvesRecipe, ValidationRecipe,
                                     DegreesRecipe, TablesRecipe)}


def parse(text: str, expected: type[Recipe] | None = None) -> Recipe:
    """A recipe from its JSON (as a job receives it), checked to be of the ``expected`` kind and
    to have exactly the fields of its class."""
    data = json.loads(text)
    step = data.pop("step", None)
    cls = RECIPES.get(step)
    if cls is None or (expected is not None and cls is not expected):
        want = expected.step if expected is not None else " or ".join(RECIPES)
        raise ValueError(f"a recipe for a {want} step is needed; got one for {step!r}")
    names = {f.name for f in fields(cls)}
    missing = sorted(n for n in names if n not in data and _required(cls, n))
    unknown = sorted(set(data) - names)
    if missing or unknown:
        raise ValueError(f"the {step} recipe does not match this code (missing {missing}, unknown {unknown}): it was "
                         "made by another version of rfw2s; run snakemake again to plan it anew")
    return cls(**data)


def _required(cls, name: str) -> bool:
    from dataclasses import MISSING

    field = next(f for f in fields(cls) if f.name == name)
    return field.default is MISSING and field.default_factory is MISSING
