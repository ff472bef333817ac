"""Config checks the JSON schema cannot express, run before any job.

The schema (``workflow/schemas/config.schema.yaml``) fixes keys and types; this module
checks relations between values (``m_te < m_st``, ``t.min < t.max``) and that the
named backend is usable, with messages that name the key and what is allowed.
"""
from __future__ import annotations

import numpy as np

from .models import REGISTRY


class ConfigError(ValueError):
    pass


def normalize(config: dict) -> dict:
    """Read YAML 1.1 exponent literals without a sign (``1.0e2``, which PyYAML leaves as
    strings) in the ``t`` grids as numbers; anything else is left for the schema to judge."""
    for exp in (config.get("experiments") or {}).values():
        if not isinstance(exp, dict):
            continue
        sampled = (exp.get("validation") or {}).get("sampled") if isinstance(exp.get("validation"), dict) else None
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


def time_grid(t: dict) -> np.ndarray:
    """The log-spaced gradient-flow times ``{min, max, num}`` (both ends included)."""
    return np.geomspace(float(t["min"]), float(t["max"]), int(t["num"]))


def model_spec(experiment: dict) -> dict:
    """The model's name and parameters: everything a kernel depends on, nothing else."""
    return {"name": experiment["model"], "d": int(experiment["d"])}


def check(config: dict) -> None:
    """Raise :class:`ConfigError` listing every semantic problem in ``config``."""
    problems = []
    experiments = config.get("experiments") or {}
    if not experiments:
        problems.append("experiments: at least one experiment is required")
    for name, exp in experiments.items():
        key = f"experiments.{name}"
        if exp.get("model") not in REGISTRY:
            problems.append(f"{key}.model: unknown model {exp.get('model')!r}; allowed: {', '.join(sorted(REGISTRY))}")
        m_st, m_te = exp.get("m_st"), exp.get("m_te") or []
        too_big = [m for m in m_te if m >= m_st]
        if too_big:
            problems.append(f"{key}.m_te: every teacher size must be smaller than m_st = {m_st}; got {too_big}")
        if len(set(m_te)) != len(m_te):
            problems.append(f"{key}.m_te: teacher sizes must be distinct; got {m_te}")
        validation = exp.get("validation")
        if validation and m_te:
            widths = list(validation.get("convergence_m_st", [])) + [validation.get("sampled", {}).get("m_st")]
            small = [w for w in widths if w is not None and w <= max(m_te)]
            if small:
                problems.append(f"{key}.validation: student widths must exceed the largest m_te = {max(m_te)}; "
                                f"got {small}")
        t = exp.get("t", {})
        if t.get("min", 0) >= t.get("max", 0):
            problems.append(f"{key}.t: need 0 < min < max; got min={t.get('min')}, max={t.get('max')}")
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
