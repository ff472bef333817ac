"""Models: each owns its closed forms (population gram, target moments, draws).

A model is looked up by name with :func:`make_model`; solvers and rules never know
which model they run.
"""
from __future__ import annotations

from .relu_sphere import ReluSphere, relu_sphere

REGISTRY = {"relu_sphere": relu_sphere}


def make_model(name: str, **params):
    """Build the model ``name`` from its parameters (as written in the config)."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}") from None
    return factory(**params)


__all__ = ["REGISTRY", "ReluSphere", "make_model", "relu_sphere"]
