"""Models: one module (or package) each, owning its closed forms, and the registry that names
them. What a model module provides is in :mod:`rfw2s.models.interface`; solvers and rules
never know which model they run.

Built in: ``relu_sphere`` (:mod:`rfw2s.models.relu`, the paper's Model 2.2),
``linear_spiked`` (:mod:`rfw2s.models.linear_spiked`, our reconstruction of Model 2.3) and
``dataset`` (:mod:`rfw2s.models.empirical`, a real dataset as the population). A
model outside this package is added with :func:`register`, or with :func:`load_plugins` on
a Python file that calls it (config key ``model_plugins``).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from . import empirical, linear_spiked, relu
from .empirical import Dataset, dataset
from .interface import InfiniteWidthCurve, Model
from .relu import ReluSphere, relu_sphere

REGISTRY: dict[str, ModuleType] = {}

# Environment variable naming plugin files (os.pathsep-separated), read by `python -m rfw2s`.
PLUGINS_VARIABLE = "RFW2S_MODEL_PLUGINS"
# A plugin without VERSION: its artifacts are keyed as version "0".
DEFAULT_VERSION = "0"


def register(module) -> None:
    """Add a model module (anything with the attributes listed in :mod:`rfw2s.models.interface`)."""
    missing = [a for a in ("NAME", "PARAMETERS", "REQUIRED", "specialize", "build") if not hasattr(module, a)]
    if missing:
        raise TypeError(f"a model module needs {missing}")
    REGISTRY[module.NAME] = module


def load_plugins(paths) -> None:
    """Import Python files that register models (each calls :func:`register`)."""
    for path in paths:
        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"model plugin {path} not found")
        name = f"rfw2s_plugin_{path.stem}"
        if name in sys.modules:
            continue
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def model_module(name: str):
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))}") from None


def model_version(name: str) -> str:
    return str(getattr(model_module(name), "VERSION", DEFAULT_VERSION))


def make_model(name: str, **spec):
    """Build the concrete model ``name`` from its spec (see ``specialize``)."""
    return model_module(name).build(**spec)


def build_spec(spec: dict):
    """Build the concrete model of a spec ``{"name": ..., **arguments}``."""
    arguments = dict(spec)
    return make_model(arguments.pop("name"), **arguments)


def specialize(name: str, params: dict, m_te: int) -> dict:
    return model_module(name).specialize(params, m_te)


for _module in (relu, linear_spiked, empirical):
    register(_module)

__all__ = ["REGISTRY", "Dataset", "InfiniteWidthCurve", "Model", "ReluSphere", "build_spec", "dataset", "load_plugins",
           "make_model", "model_module", "model_version", "register", "relu_sphere", "specialize"]
