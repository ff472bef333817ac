"""The plan's target: what the GPU rules (``kernel``, ``eigh``, ``curves``, ``validation``)
compute on and how much memory a job may plan for, resolved once.

The plan is a pure function of the configuration and this target, never of the machine that
happens to parse the workflow: with ``backend: cupy`` and ``gpu_memory_gb`` declared, a laptop,
a login node without a GPU and a GPU node plan the same keys. ``backend: auto`` is resolved by
the Snakemake process the user started (it probes for a GPU once) and handed to every job
through the environment (:data:`VARIABLE`; Slurm's ``--export=ALL`` carries it), so a job-side
Snakemake process reads it and never probes.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

from .machine import host_memory

# The environment variable that hands the resolved target from the Snakemake process the user
# started to every job (and the job-side Snakemake processes of a cluster executor).
VARIABLE = "RFW2S_PLAN_TARGET"
GIB = 1 << 30
BACKENDS = ("numpy", "cupy")


class TargetError(ValueError):
    """The configuration does not say, and this process may not find out, where jobs compute."""


@dataclass(frozen=True)
class Target:
    backend: str  # what the GPU rules compute on: "numpy" or "cupy"
    gpu_memory: int | None  # bytes of the GPU each GPU job gets (cupy), else None
    host_memory: int  # bytes a NumPy job may plan for
    declared_gpu_memory: bool = False  # gpu_memory came from gpu_memory_gb (a job checks it against its GPU)
    declared_host_memory: bool = False  # host_memory came from memory_gb

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise TargetError(f"a resolved backend is one of {', '.join(BACKENDS)}; got {self.backend!r}")
        if (self.backend == "cupy") != (self.gpu_memory is not None):
            raise TargetError("a CuPy target has the memory of its GPU, and only a CuPy target")

    def memory(self, backend: str) -> int:
        """What a job computing on ``backend`` may plan for: its GPU's memory, or the host's."""
        return self.gpu_memory if backend == "cupy" else self.host_memory

    def describe_memory(self, backend: str) -> str:
        """Where that memory figure comes from, for messages."""
        from .resources import format_bytes

        if backend == "cupy":
            return (f"the {format_bytes(self.gpu_memory)} that gpu_memory_gb: {self.gpu_memory / GIB:g} declares"
                    if self.declared_gpu_memory else
                    f"the {format_bytes(self.gpu_memory)} of this machine's GPU (gpu_memory_gb unset)")
        return (f"the {format_bytes(self.host_memory)} that memory_gb: {self.host_memory / GIB:g} declares"
                if self.declared_host_memory else f"the {format_bytes(self.host_memory)} of this machine (memory_gb unset)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Target":
        return cls(**json.loads(text))


def _gib(value) -> int:
    return int(round(float(value) * GIB))


def resolve(config: dict, probe=None) -> Target:
    """The target of a validated ``config`` (keys ``backend``, ``gpu_memory_gb``, ``memory_gb``).

    Only ``backend: auto``, and ``backend: cupy`` without ``gpu_memory_gb``, ask this machine
    for a GPU: ``probe()`` returns ``(total_bytes, None)`` for a usable GPU or ``(None, reason)``
    (default :func:`rfw2s.backend.probe_gpu`, which imports CuPy; nothing else here does)."""
    host = _gib(config["memory_gb"]) if config.get("memory_gb") is not None else host_memory()
    declared_host = config.get("memory_gb") is not None
    declared = config.get("gpu_memory_gb")
    backend = config.get("backend", "auto")
    if backend == "numpy":
        return Target("numpy", None, host, declared_host_memory=declared_host)
    if backend == "cupy" and declared is not None:
        return Target("cupy", _gib(declared), host, True, declared_host)
    if probe is None:
        from .backend import probe_gpu as probe
    total, reason = probe()
    if total is None:
        if backend == "cupy":
            raise TargetError(f"config key 'backend': cupy, but {reason} on this machine, and gpu_memory_gb is not "
                              "set. To plan GPU jobs from a machine without a GPU (a cluster's login node), declare "
                              "the memory of the GPU each GPU job gets in GiB as CUDA reports it (an 80 GB card: gpu_memory_gb: 79); "
                              "or set backend: auto "
                              "or numpy")
        return Target("numpy", None, host, declared_host_memory=declared_host)
    if declared is not None:
        return Target("cupy", _gib(declared), host, True, declared_host)
    return Target("cupy", int(total), host, False, declared_host)


def handed_down(environ=os.environ) -> Target | None:
    """The target the process that started the run handed to this one, if any."""
    text = environ.get(VARIABLE)
    if not text:
        return None
    try:
        return Target.from_json(text)
    except (ValueError, TypeError) as exc:
        raise TargetError(f"the plan target handed down in {VARIABLE} cannot be read ({exc}): {text[:200]!r}") from None


def for_this_process(config: dict, main: bool, probe=None) -> Target:
    """The target as this Snakemake process must use it: resolved here (``main``: the process the
    user started, which then hands it down through :data:`VARIABLE`), else the one handed down."""
    if main:
        target = resolve(config, probe)
        os.environ[VARIABLE] = target.to_json()
        return target
    target = handed_down()
    if target is None:
        raise TargetError(f"this job-side Snakemake process was handed no plan target (environment variable "
                          f"{VARIABLE}, set by the Snakemake process that started the run): a job never decides "
                          "where it computes. Run jobs with the environment exported (Slurm: --export=ALL, the "
                          "SLURM plugin's default)")
    return target
