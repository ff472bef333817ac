"""How a curve job reaches the student's kernel: the operator table, one for every route.

The plan (:func:`rfw2s.plan.choose_operator`) picks one operator per student, from the config's
solver settings, the target's memory and what the student is trained on; the job follows it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Operator:
    name: str
    solver: str  # the tables' `solver` column
    trains_on: str  # "population" (the exact population moments), "sample" (n drawn inputs), "rows" (a dataset's)
    reads: tuple = ()  # the cached files it reads per student draw (rfw2s.paths)
    lanczos: bool = False  # takes the lanczos settings (tol, max_steps)


OPERATORS = {op.name: op for op in (
    # The population: the dense eigendecomposition (the reference), Lanczos on a kernel a kernel
    # job cached, on the kernel built in the curve job, or on tiles rebuilt at every step.
    Operator("eigh", "eigh", "population", ("eigvals", "eigvecs")),
    Operator("cached", "lanczos", "population", ("gram",), lanczos=True),
    Operator("stored", "lanczos", "population", lanczos=True),
    Operator("tiled", "lanczos-matrix-free", "population", lanczos=True),
    # n inputs (rfw2s.finite_sample): the sample's thin SVD, or Lanczos on the sample's kernel
    # with the population kernel stored or tiled.
    Operator("svd", "sample-svd", "sample"),
    Operator("krylov", "sample-lanczos", "sample", lanczos=True),
    Operator("krylov-tiled", "sample-lanczos-matrix-free", "sample", lanczos=True),
    # A dataset's rows, fewer than the student's features (rfw2s.dual): the N x N kernel.
    Operator("dual", "dual", "rows"),
)}


def operator(name: str) -> Operator:
    try:
        return OPERATORS[name]
    except KeyError:
        raise ValueError(f"operator must be one of {', '.join(OPERATORS)}; got {name!r}") from None


def operators_for(trains_on: str) -> tuple[str, ...]:
    return tuple(name for name, op in OPERATORS.items() if op.trains_on == trains_on)
