"""Models: each is one module that owns its closed forms, and the registry that names them.

A model module provides ``NAME``; ``PARAMETERS`` and ``REQUIRED`` (its config parameters
as JSON schema); ``specialize(params, m_te) -> spec`` (the concrete model for a teacher
size: a dict with ``name`` and the arguments of ``build``); and ``build(**spec)``, whose
result has ``gram(A, B)``, ``target_moments(A)``, ``target_norm2``,
``sample_features(seed, M)``, ``sample_inputs(rng, n)``, ``features(X, A)``, ``target(X)``
and, where it exists, ``infinite_width(U, coef, ts)``. Solvers and rules never know which
model they run. A model outside this package is added with :func:`register`, or with
:func:`load_plugins` on a Python file that calls it (config key ``model_plugins``).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from . import linear_spiked, relu_sphere as _relu_sphere_module
from .relu_sphere import ReluSphere, relu_sphere

REGISTRY: dict[str, ModuleType] = {}

# Environment variable naming plugin files (os.pathsep-separated), read by `python -m rfw2s`.
PLUGINS_VARIABLE = "RFW2S_MODEL_PLUGINS"


def register(module) -> None:
    """Add a model module (anything with the attributes listed in this package's docstring)."""
    missing = [a for a in ("NAME", "PARAMETERS", "REQUIRED", "specialize", "build") if not hasattr(module, a)]
    if missing:
        raise TypeError(f"a model module needs {missing}")
    REGISTRY[module.NAME] = module


def load_plugins(paths) -> None:
    """Import Python files that register models (each calls :func:`register`)."""
    for path in paths:
        path = Path(path).resolve()
        name = f"rfw2s_plugin_{path.stem}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or not path.is_file():
            raise FileNotFoundError(f"model plugin {path} not found")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def model_module(name: str):
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}") from None


def make_model(name: str, **spec):
    """Build the concrete model ``name`` from its spec (see ``specialize``)."""
    return model_module(name).build(**spec)


def specialize(name: str, params: dict, m_te: int) -> dict:
    return model_module(name).specialize(params, m_te)


for _module in (_relu_sphere_module, linear_spiked):
    register(_module)

__all__ = ["REGISTRY", "ReluSphere", "load_plugins", "make_model", "model_module", "register", "relu_sphere",
           "specialize"]
