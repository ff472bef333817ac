"""A strict stand-in for CuPy, backed by NumPy and a C++ compiler: the CuPy code paths of
rfw2s run, and are checked, on a machine without a GPU.

It enforces what most often breaks code that has never met a GPU, as CuPy does:

* a device array is not a host array: ``np.asarray(device)`` raises TypeError (use
  ``.get()``); a host ndarray as the operand of a device operation, ufunc or function
  raises TypeError; a non-scalar host array assigned into a device slice raises ValueError
  (CuPy routes it to ``fill``); and, stricter than CuPy may be, ``out=`` must be a device
  array (a result written to the host would leave the device);
* fresh device memory (``empty``, ``empty_like``) holds NaN, where a GPU holds garbage, so
  whatever is read before it is written shows;
* ``ElementwiseKernel`` and ``RawKernel`` run their CUDA C source compiled as C++ (g++),
  a RawKernel thread after thread over its whole launch (one with ``__shared__`` memory and
  ``__syncthreads()``: each block's threads as real threads meeting at a barrier, its shared
  memory theirs, one block after another): the source itself gives the numbers, not a NumPy
  rewrite of it. Kernel argument types are checked against the signature (CuPy passes a
  pointer or a scalar as given, whatever the kernel declares).

It cannot check the GPU itself: NVRTC compilation, launch limits, warp-level operations
(shuffles, votes) and atomics (they do not compile here), speed or memory. The suite runs
the real CuPy on a machine with a GPU.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

# Kernels run as C++ compiled by g++ (without it, tests that need the emulation skip).
COMPILER = shutil.which("g++")
# Memory the emulated GPU reports (free, total) in bytes: a test may shrink it.
MEMORY = {"free": 12 << 30, "total": 16 << 30}
DEVICE_NAME = "Emulated GPU (NumPy and g++)"

# Device-to-host transfers so far (.get(), float(), bool(), ...): a test reads the difference.
TRANSFERS = {"count": 0}


def _transfer():
    TRANSFERS["count"] += 1


_IMPLICIT = ("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
             "a NumPy array explicitly.")


class ndarray(NDArrayOperatorsMixin):
    """A device array: a NumPy array behind an interface that refuses to mix with host arrays."""

    __module__ = "cupy"  # rfw2s tells CuPy arrays by their type's module
    __array_priority__ = 100

    def __init__(self, host: np.ndarray):
        self._a = host

    # --- transfers: explicit only, and counted (each makes the host wait for the device) --
    def get(self) -> np.ndarray:
        _transfer()
        return self._a.copy()

    def __array__(self, *args, **kwargs):
        raise TypeError(_IMPLICIT)

    def item(self):
        _transfer()
        return self._a.item()

    def __float__(self):
        _transfer()
        return float(self._a)

    def __int__(self):
        _transfer()
        return int(self._a)

    def __bool__(self):
        _transfer()
        return bool(self._a)

    def __format__(self, spec):
        _transfer()
        return format(self._a, spec)

    def __repr__(self):
        return f"emulated cupy array({self._a!r})"

    # --- attributes and views -----------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(x) for x in self._a)

    def __getitem__(self, key):
        return _wrap(self._a[_device_index(key)])

    def __setitem__(self, key, value):
        key = _device_index(key)
        if isinstance(value, ndarray):
            self._a[key] = value._a
        elif _is_advanced(key):
            self._a[key] = np.asarray(value)  # CuPy copies the values over first
        else:
            _check_fill(value)  # CuPy fills a basic slice with a scalar
            self._a[key] = value

    def fill(self, value):
        _check_fill(value)
        self._a[...] = value

    # --- NumPy dispatch: ufuncs and functions on device arrays stay on the device ---------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        return _call(getattr(ufunc, method), *inputs, **kwargs)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, *args, **kwargs)


def _device_method(name):
    def method(self, *args, **kwargs):
        return _call(getattr(np.ndarray, name), self, *args, **kwargs)
    return method


for _method in ("sum", "max", "min", "mean", "std", "any", "all", "argmin", "argmax", "reshape", "ravel", "copy",
                "astype", "transpose"):
    setattr(ndarray, _method, _device_method(_method))


def _check_fill(value):
    if isinstance(value, np.ndarray) and value.shape != ():
        raise ValueError("non-scalar numpy.ndarray cannot be used for fill")
    if not np.isscalar(value) and not isinstance(value, np.ndarray):
        raise TypeError(f"Unsupported type {type(value)}")


def _device_index(key):
    """Indices may be host arrays (CuPy copies them over) or device arrays."""
    if isinstance(key, tuple):
        return tuple(_device_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key


def _is_advanced(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (np.ndarray, list)) for k in keys)


def _unwrap(value, name="argument"):
    if isinstance(value, ndarray):
        return value._a
    if isinstance(value, np.ndarray) and value.ndim > 0:
        raise TypeError(f"Unsupported type {type(value)}: a host array as the {name} of a device operation "
                        f"(cupy.asarray copies it over)")
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, name) for v in value)
    return value


def _wrap(result, outs=()):
    for fake in outs:
        if result is fake._a:
            return fake
    if isinstance(result, np.ndarray):
        return ndarray(result)
    if isinstance(result, np.generic):
        return ndarray(np.asarray(result))  # CuPy's reductions give 0-d device arrays
    if isinstance(result, tuple):
        return type(result)(*(_wrap(r, outs) for r in result)) if hasattr(result, "_fields") else \
            tuple(_wrap(r, outs) for r in result)
    return result


def _call(func, *args, **kwargs):
    out = kwargs.pop("out", None)
    outs = out if isinstance(out, tuple) else (out,) if out is not None else ()
    for o in outs:
        if not isinstance(o, ndarray):
            raise TypeError(f"out must be a device array (cupy.ndarray); got {type(o)}")
    args = tuple(_unwrap(a) for a in args)
    kwargs = {k: _unwrap(v, f"{k}=") for k, v in kwargs.items()}
    if outs:
        kwargs["out"] = tuple(o._a for o in outs) if isinstance(out, tuple) else out._a
    return _wrap(func(*args, **kwargs), outs)


# --- creation and transfer -------------------------------------------------------------
def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else a.astype(dtype)
    return ndarray(np.array(a, dtype=dtype, order=order or "K", copy=True))


def array(a, dtype=None, copy=True, order="K"):
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, copy=copy, order=order))
    return ndarray(np.array(a, dtype=dtype, copy=True, order=order))


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray):
        return ndarray(np.ascontiguousarray(a._a, dtype=dtype))
    return ndarray(np.array(a, dtype=dtype, order="C", copy=True))


def empty(shape, dtype=np.float64, order="C"):
    out = np.empty(shape, dtype=dtype, order=order)
    _poison(out)
    return ndarray(out)


def empty_like(a, dtype=None):
    return empty(a.shape, dtype or a.dtype)


def _poison(host):
    if host.dtype.kind in "fc":
        host[...] = np.nan


# --- kernels: their CUDA C source compiled as C++ --------------------------------------
_CTYPES = {"double": (np.float64, ctypes.c_double), "float": (np.float32, ctypes.c_float),
           "long long": (np.int64, ctypes.c_longlong), "int": (np.int32, ctypes.c_int),
           "unsigned int": (np.uint32, ctypes.c_uint)}
_ELEMENTWISE_TYPES = {"float64": "double", "float32": "float", "int64": "long long", "int32": "int"}
# What CUDA provides implicitly, for a host compiler: the launch runs one thread at a time.
_PRELUDE = r"""
#include <math.h>
struct rfw2s_dim3 { unsigned x, y, z; };
static rfw2s_dim3 blockIdx, threadIdx, blockDim, gridDim;
#define __global__
#define __device__
#define __forceinline__ inline
"""
# A kernel with shared memory and barriers runs each block's threads as real threads, with
# __syncthreads() a barrier and __shared__ storage shared by them (blocks one after another).
_THREADED_PRELUDE = r"""
#include <math.h>
#include <barrier>
#include <thread>
#include <vector>
struct rfw2s_dim3 { unsigned x, y, z; };
static thread_local rfw2s_dim3 threadIdx;
static rfw2s_dim3 blockIdx, blockDim, gridDim;
static std::barrier<>* rfw2s_block_barrier;
#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __syncthreads() rfw2s_block_barrier->arrive_and_wait()
"""
_LIBRARIES: dict = {}  # compiled kernels by source hash
_PROCESS: dict = {}  # this process's build folder and, under the shims, its modules


# Processes started by one test (a workflow's jobs) share their compiled kernels here.
SHARED_BUILD = "RFW2S_EMULATED_CUPY_BUILD"


def _build_folder() -> Path:
    if "folder" not in _PROCESS:
        if os.environ.get(SHARED_BUILD):
            _PROCESS["folder"] = Path(os.environ[SHARED_BUILD])
        else:
            _PROCESS["folder"] = Path(tempfile.mkdtemp(prefix="emulated-cupy-"))
            atexit.register(shutil.rmtree, _PROCESS["folder"], ignore_errors=True)
    return _PROCESS["folder"]


def _compile(source: str, threaded: bool = False):
    """``source`` as a shared library (g++ -O2; C++20 with threads for ``threaded``), once per source."""
    key = hashlib.sha256(source.encode()).hexdigest()[:16]
    if key not in _LIBRARIES:
        path = _build_folder() / f"kernel_{key}"
        library = path.with_suffix(".so")
        if not library.exists():
            # Another process may compile the same source: each writes its own file, then renames.
            scratch = path.with_name(f"{path.name}.{os.getpid()}")
            scratch.with_suffix(".cpp").write_text(source)
            flags = ["-std=c++20", "-pthread"] if threaded else []
            result = subprocess.run(["g++", "-O2", *flags, "-shared", "-fPIC", "-o", str(scratch.with_suffix(".so")),
                                     str(scratch.with_suffix(".cpp"))], capture_output=True, text=True, check=False)
            if result.returncode:
                raise RuntimeError(f"emulated CuPy: the kernel source does not compile as C++:\n{result.stderr}")
            os.replace(scratch.with_suffix(".so"), library)
        _LIBRARIES[key] = ctypes.CDLL(str(library))
    return _LIBRARIES[key]


def _c_parameter(declaration: str):
    """``const double* __restrict__ T`` -> (name, base type, is pointer)."""
    pointer = "*" in declaration
    words = declaration.replace("*", " ").split()
    name = words[-1]
    base = " ".join(w for w in words[:-1] if w not in ("const", "__restrict__"))
    if base not in _CTYPES:
        raise NotImplementedError(f"emulated CuPy: kernel parameter type {base!r} of {declaration!r}")
    return name, base, pointer


def _check_argument(value, name, base, pointer, kernel):
    dtype = _CTYPES[base][0]
    if pointer:
        if not isinstance(value, ndarray) or value.dtype != dtype or not value.flags.c_contiguous:
            raise TypeError(f"{kernel}: {name} ({base}*) needs a C-contiguous {np.dtype(dtype)} device array; "
                            f"got {type(value).__name__} {getattr(value, 'dtype', '')}")
        return value._a.ctypes.data_as(ctypes.c_void_p)
    if type(value) is not dtype:
        raise TypeError(f"{kernel}: {name} ({base}) needs numpy.{np.dtype(dtype).name}; got {type(value).__name__}")
    return _CTYPES[base][1](value)


class RawKernel:
    """``cupy.RawKernel``: the launch runs every thread in order (1-D grids and blocks); one
    with shared memory and barriers runs each block's threads as real threads."""

    def __init__(self, code: str, name: str, options=(), **kwargs):
        match = re.search(r'extern\s+"C"\s+__global__\s+void\s+' + re.escape(name) + r"\s*\(([^)]*)\)", code)
        if match is None:
            raise ValueError(f"emulated CuPy: no extern \"C\" __global__ function {name!r} in the source")
        self.name = name
        self.parameters = [_c_parameter(p) for p in match.group(1).split(",")]
        arguments = ", ".join(name for name, _, _ in self.parameters)
        threaded = "__syncthreads" in code or "__shared__" in code
        head = f'extern "C" void rfw2s_launch(long long grid, long long block, {match.group(1)}) {{\n'
        if threaded:
            launch = (head + "    gridDim.x = (unsigned)grid; blockDim.x = (unsigned)block;\n"
                      "    for (long long b = 0; b < grid; ++b) {\n"
                      "        blockIdx.x = (unsigned)b;\n"
                      "        std::barrier<> barrier(block); rfw2s_block_barrier = &barrier;\n"
                      "        std::vector<std::thread> threads;\n"
                      "        for (long long t = 0; t < block; ++t)\n"
                      f"            threads.emplace_back([=] {{ threadIdx.x = (unsigned)t; {name}({arguments}); }});\n"
                      "        for (auto& thread : threads) thread.join();\n"
                      "    }\n}\n")
        else:
            launch = (head + "    gridDim.x = (unsigned)grid; blockDim.x = (unsigned)block;\n"
                      "    for (long long b = 0; b < grid; ++b)\n"
                      "        for (long long t = 0; t < block; ++t) {\n"
                      "            blockIdx.x = (unsigned)b; threadIdx.x = (unsigned)t;\n"
                      f"            {name}({arguments});\n"
                      "        }\n}\n")
        self._launch = _compile((_THREADED_PRELUDE if threaded else _PRELUDE) + code + launch, threaded).rfw2s_launch

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        grid, block = tuple(grid), tuple(block)
        if grid[1:] not in ((), (1,), (1, 1)) or block[1:] not in ((), (1,), (1, 1)):
            raise NotImplementedError("emulated CuPy runs 1-D launches only")
        if len(args) != len(self.parameters):
            raise TypeError(f"{self.name} takes {len(self.parameters)} arguments; got {len(args)}")
        values = [_check_argument(v, *p, self.name) for v, p in zip(args, self.parameters)]
        self._launch(ctypes.c_longlong(grid[0]), ctypes.c_longlong(block[0]), *values)


class ElementwiseKernel:
    """``cupy.ElementwiseKernel`` for contiguous arrays of one size (no broadcasting), the
    outputs given (as rfw2s calls it)."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel", **kwargs):
        self.name = name
        self.inputs = [self._parameter(p) for p in in_params.split(",")]
        self.outputs = [self._parameter(p) for p in out_params.split(",")]
        self.operation = operation
        self._functions: dict = {}

    @staticmethod
    def _parameter(text):
        dtype, name = text.split()
        if dtype not in _ELEMENTWISE_TYPES:
            raise NotImplementedError(f"emulated CuPy: ElementwiseKernel type {dtype!r}")
        return name, dtype

    def __call__(self, *args):
        if len(args) != len(self.inputs) + len(self.outputs):
            raise NotImplementedError(f"emulated CuPy: {self.name} needs its {len(self.inputs)} inputs and "
                                      f"{len(self.outputs)} outputs; got {len(args)} arguments")
        for a in args:
            if isinstance(a, np.ndarray):
                raise TypeError(f"Unsupported type {type(a)}")
        arrays = [a for a in args if isinstance(a, ndarray)]
        if not arrays:
            raise NotImplementedError("emulated CuPy: an ElementwiseKernel call without arrays")
        size = arrays[0].size
        if any(a.size != size or not a.flags.c_contiguous for a in arrays):
            raise NotImplementedError("emulated CuPy: ElementwiseKernel arrays must be contiguous and of one size")
        is_array = tuple(isinstance(a, ndarray) for a in args)
        if is_array not in self._functions:
            self._functions[is_array] = self._build(is_array)
        parameters = self.inputs + self.outputs
        values = []
        for value, (name, dtype), array_ in zip(args, parameters, is_array):
            values.append(_check_argument(value, name, _ELEMENTWISE_TYPES[dtype], array_, self.name) if array_
                          else _CTYPES[_ELEMENTWISE_TYPES[dtype]][1](value))
        self._functions[is_array](ctypes.c_longlong(size), *values)
        outputs = args[len(self.inputs):]
        return outputs[0] if len(outputs) == 1 else outputs

    def _build(self, is_array):
        signature, body = [], []
        for i, ((name, dtype), array_) in enumerate(zip(self.inputs + self.outputs, is_array)):
            ctype = _ELEMENTWISE_TYPES[dtype]
            output = i >= len(self.inputs)
            if not array_:
                if output:
                    raise TypeError(f"{self.name}: output {name} must be a device array")
                signature.append(f"{ctype} {name}")
            else:
                signature.append(f"{'' if output else 'const '}{ctype}* rfw2s_{name}")
                body.append(f"{ctype}{'&' if output else ''} {name} = rfw2s_{name}[i];")
        source = (_PRELUDE + f'extern "C" void rfw2s_run(long long n, {", ".join(signature)}) {{\n'
                  f"    for (long long i = 0; i < n; ++i) {{ {' '.join(body)} {self.operation} }}\n}}\n")
        return _compile(source).rfw2s_run


# --- the device ------------------------------------------------------------------------
class _Device:
    def __init__(self, device=None):
        self.id = 0

    def synchronize(self):
        pass

    @property
    def mem_info(self):
        return MEMORY["free"], MEMORY["total"]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _MemoryPool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_POOL = _MemoryPool()
# Set to `when-visible`, the emulated GPU exists only where CUDA_VISIBLE_DEVICES names a device, as
# Slurm sets it in a job given a GPU (gres): a process the scheduler gave none sees no GPU.
VISIBILITY = "RFW2S_EMULATED_GPU"


def _device_count() -> int:
    if os.environ.get(VISIBILITY) != "when-visible":
        return 1
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    return 1 if visible and visible != "NoDevFiles" else 0


_runtime = types.SimpleNamespace(
    getDeviceCount=_device_count,
    getDeviceProperties=lambda device: {"name": DEVICE_NAME.encode(), "totalGlobalMem": MEMORY["total"]},
    runtimeGetVersion=lambda: 12090,
)


def _errstate(*, divide=None, over=None, under=None, invalid=None, linalg=None):
    for value in (divide, over, under, invalid, linalg):
        if value not in (None, "ignore", "warn", "raise", "call", "print", "log"):
            raise ValueError(f"invalid errstate value {value!r}")
    return contextlib.nullcontext()


def _numpy_attribute(name: str):
    """Whatever else NumPy has: types and constants as they are, functions on device arrays."""
    if name.startswith("__"):
        raise AttributeError(name)
    value = getattr(np, name)
    if isinstance(value, (type, np.dtype, float, int)) or not callable(value):
        return value
    return lambda *args, **kwargs: _call(value, *args, **kwargs)


def _linalg_attribute(name: str):
    value = getattr(np.linalg, name)
    return lambda *args, **kwargs: _call(value, *args, **kwargs)


def modules() -> tuple[types.ModuleType, types.ModuleType]:
    """Fresh ``cupy`` and ``cupyx`` module objects."""
    cupy = types.ModuleType("cupy")
    cupy.__dict__.update(
        __version__="emulated", __getattr__=_numpy_attribute, ndarray=ndarray, asarray=asarray, array=array,
        ascontiguousarray=ascontiguousarray, empty=empty, empty_like=empty_like,
        RawKernel=RawKernel, ElementwiseKernel=ElementwiseKernel, get_default_memory_pool=lambda: _POOL,
        cuda=types.SimpleNamespace(Device=_Device, runtime=_runtime),
    )
    linalg = types.ModuleType("cupy.linalg")
    linalg.__getattr__ = _linalg_attribute
    cupy.linalg = linalg
    cupyx = types.ModuleType("cupyx")
    cupyx.errstate = _errstate
    return cupy, cupyx


def install(monkeypatch) -> types.ModuleType:
    """Make ``import cupy`` (and ``cupyx``) give the emulation for one test; compiled kernels
    that rfw2s cached for another ``cupy`` are forgotten."""
    cupy, cupyx = modules()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "cupyx", cupyx)
    relu = sys.modules.get("rfw2s.models.relu.kernel")
    if relu is not None:
        monkeypatch.setattr(relu, "_CUDA_KERNELS", {})
    return cupy


def subprocess_environment(folder: Path) -> dict:
    """Environment variables under which a Python subprocess (a Snakemake job) imports this
    emulation as ``cupy`` and ``cupyx``: shims in ``folder`` put first on its path."""
    for name, attribute in (("cupy", 0), ("cupyx", 1)):
        package = Path(folder) / "shims" / name
        package.mkdir(parents=True, exist_ok=True)
        # A module that replaces itself in sys.modules while imported is what the import gives.
        (package / "__init__.py").write_text(
            f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nimport emulated_cupy\n"
            f"sys.modules[{name!r}] = emulated_cupy.shared_modules()[{attribute}]\n")
    (Path(folder) / "kernels").mkdir(exist_ok=True)
    path = os.pathsep.join(filter(None, [str(Path(folder) / "shims"), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": path, SHARED_BUILD: str(Path(folder) / "kernels")}


def shared_modules():
    """The ``cupy`` and ``cupyx`` of this process (for the shims: one pair, whichever is
    imported first)."""
    if "modules" not in _PROCESS:
        _PROCESS["modules"] = modules()
    return _PROCESS["modules"]
