"""Array-library choice: CuPy on a usable GPU, NumPy otherwise.

Solvers never import CuPy themselves: they take ``xp`` from :func:`array_namespace`
of their inputs (array type in = array type out), so one code path serves both.
"""
from __future__ import annotations

import contextlib
import os
import platform
from dataclasses import dataclass
from types import ModuleType

import numpy as np

BACKENDS = ("auto", "numpy", "cupy")


class BackendError(RuntimeError):
    """The requested array library cannot be used on this machine."""


@dataclass(frozen=True)
class Backend:
    name: str  # "numpy" or "cupy"
    xp: ModuleType
    device: str  # human-readable, for logs and artifact metadata

    def asarray(self, a, dtype=np.float64):
        return self.xp.asarray(a, dtype=dtype)

    def linalg_guard(self):
        """Make a failed CuPy solver raise instead of returning NaNs (NumPy always raises)."""
        if self.name == "cupy":
            import cupyx

            return cupyx.errstate(linalg="raise")
        return contextlib.nullcontext()

    def synchronize(self):
        if self.name == "cupy":
            self.xp.cuda.Device().synchronize()


def _cupy_or_reason():
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return None, f"CuPy is not importable ({exc.__class__.__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
        if n < 1:
            return None, "CuPy found no CUDA device"
        cupy.zeros(1).sum().item()  # a real launch: catches driver/runtime mismatches
    except Exception as exc:
        return None, f"CuPy cannot use a GPU ({exc.__class__.__name__}: {exc})"
    return cupy, None


def probe_gpu() -> tuple[int | None, str | None]:
    """``(total bytes, None)`` of the GPU CuPy would use here, or ``(None, why not)``: a real
    launch, so a broken driver counts as no GPU. Only the process that plans a run calls this
    (rfw2s.target), and only where the configuration leaves the GPU to be found."""
    cupy, reason = _cupy_or_reason()
    if cupy is None:
        return None, reason
    return int(cupy.cuda.Device().mem_info[1]), None


class JobError(RuntimeError):
    """A job cannot compute where its recipe says: it stops before writing anything."""


def _where() -> str:
    """This host, and what a scheduler told the job about its GPUs, for messages."""
    parts = [f"host {platform.node() or '?'}"]
    for name in ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES"):
        if name in os.environ:
            parts.append(f"{name}={os.environ[name]!r}")
    return ", ".join(parts)


def for_job(name: str, gpus=None, declared_gpu_memory: int | None = None) -> Backend:
    """The backend a job's recipe names (``numpy`` or ``cupy``, never ``auto``), strictly: a
    CuPy recipe on a machine without a usable GPU, or with less GPU memory than the plan was
    made for (``declared_gpu_memory``, bytes), raises :class:`JobError` naming where the job
    ran and what it was given (``gpus``: the rule's ``gpu`` resource). It never falls back."""
    if name == "numpy":
        return _numpy_backend()
    if name != "cupy":
        raise JobError(f"a job's recipe names backend numpy or cupy, resolved when the run was planned; got {name!r}")
    given = "" if gpus is None else f"; the rule was given the resource gpu={gpus}"
    cupy, reason = _cupy_or_reason()
    if cupy is None:
        raise JobError(f"this job's recipe computes on CuPy (planned with backend: cupy), but {reason} ({_where()}"
                       f"{given}). It stops rather than compute on the CPU: run it where a GPU is usable (on Slurm, "
                       "give its rule a GPU: resources gpu=1 and a GPU partition), or plan with backend: numpy")
    if declared_gpu_memory is not None:
        total = int(cupy.cuda.Device().mem_info[1])
        if declared_gpu_memory > total:
            raise JobError(f"the plan was made for GPUs of gpu_memory_gb = {declared_gpu_memory / 2**30:g} GiB, but "
                           f"this job's GPU has {total / 2**30:.2f} GiB ({_where()}); declare at most that, or run "
                           "the GPU rules on larger GPUs")
    return _cuda_backend(cupy)


def _cuda_backend(cupy) -> Backend:
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    gpu = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    return Backend("cupy", cupy, f"GPU {gpu}")


def _numpy_backend() -> Backend:
    return Backend("numpy", np, f"CPU ({platform.processor() or platform.machine()})")


def resolve(name: str = "auto") -> Backend:
    """Return the backend called ``name`` (``auto``, ``numpy`` or ``cupy``).

    ``auto`` takes CuPy when a GPU is usable and NumPy otherwise; ``cupy`` without a
    usable GPU raises :class:`BackendError` saying why.
    """
    if name not in BACKENDS:
        raise BackendError(f"backend must be one of {', '.join(BACKENDS)}; got {name!r}")
    if name == "numpy":
        return _numpy_backend()
    cupy, reason = _cupy_or_reason()
    if cupy is None:
        if name == "cupy":
            raise BackendError(
                f"backend: cupy was requested but {reason}. Install the GPU extra "
                "(pip install -e '.[gpu]') on a machine with a CUDA GPU, or set backend: auto "
                "or numpy."
            )
        return _numpy_backend()
    return _cuda_backend(cupy)


def as_backend(backend) -> Backend:
    """A :class:`Backend` as given, or resolved from its name."""
    return backend if isinstance(backend, Backend) else resolve(backend)


def array_namespace(*arrays) -> ModuleType:
    """The array library of ``arrays`` (CuPy if any is a CuPy array, else NumPy)."""
    for a in arrays:
        mod = type(a).__module__
        if mod.startswith("cupy"):
            import cupy

            return cupy
    return np


def to_numpy(a) -> np.ndarray:
    """Host copy of an array from either library."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def to_host(*arrays) -> list[np.ndarray]:
    """Host copies of several arrays of one library in one transfer (a device waits for the
    host once, not once per array)."""
    if not arrays or not type(arrays[0]).__module__.startswith("cupy"):
        return [np.asarray(a) for a in arrays]
    xp = array_namespace(*arrays)
    flat = to_numpy(xp.concatenate([xp.ravel(xp.asarray(a, dtype=xp.float64)) for a in arrays]))
    edges = np.cumsum([0] + [int(np.prod(a.shape)) for a in arrays])
    return [flat[lo:hi].reshape(a.shape) for a, lo, hi in zip(arrays, edges[:-1], edges[1:])]


def versions() -> dict[str, str]:
    """Library versions and device, recorded in every artifact's metadata. Read from the
    installed distributions, not by importing them (a job that does not use pandas does not
    pay its import); CuPy and CUDA where this process uses CuPy."""
    import sys
    from importlib import metadata

    info = {"python": platform.python_version(), "numpy": np.__version__, "machine": platform.machine()}
    for name in ("pandas", "pyarrow"):
        try:
            info[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            info["cupy"] = cupy.__version__
            info["cuda_runtime"] = str(cupy.cuda.runtime.runtimeGetVersion())
        except Exception:
            pass
    return info


_BLAS_CONTROL = None  # threadpoolctl's view of the loaded BLAS, found once


def one_blas_thread():
    """A context in which the CPU's BLAS runs one thread per call, restored after: for code
    that runs its own threads, one per core (the symmetric product of :mod:`rfw2s.curves`),
    and for the Lanczos steps around it. BLAS's threads would otherwise compete for those cores: at
    16 vectors the product is 2x slower, and after a threaded BLAS call its idle threads
    spin on the cores for a while (the product after each Lanczos re-orthogonalisation took
    14 ms instead of 9 at M = 4096, 2-core CPU machine). threadpoolctl knows every BLAS numpy
    may load; CuPy's libraries are not affected."""
    global _BLAS_CONTROL
    if _BLAS_CONTROL is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROL = ThreadpoolController()
    return _BLAS_CONTROL.limit(limits=1, user_api="blas")
