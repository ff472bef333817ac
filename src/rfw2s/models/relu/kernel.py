"""The ReLU kernel on the sphere, ``kappa(rho) = E_x[relu(<u, x>) relu(<u', x>)]`` for unit
``u, u'`` with ``rho = <u, u'>``, evaluated in place on the CPU (in cache-sized chunks, on
the job's threads) and on CuPy: one fused elementwise kernel; the matrix-free product's raw
kernel, which applies ``kappa`` to a tile of inner products and multiplies it by the Lanczos
block in one pass; and the raw kernel with the inner products inside (no tile at all). Every
CUDA source compiles for any feature dimension and any number of columns (a block too wide
for a kernel's registers takes a logged fallback), and a NaN inner product gives a NaN
kernel value on the GPU as on the CPU."""
from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ...backend import array_namespace
from ...machine import usable_cores


def kappa(rho, d: int):
    """Population kernel ``E[relu(<u,x>) relu(<u',x>)]`` as a function of ``rho = <u,u'>``.

    ``(sin th + (pi - th) cos th) / (2 pi d)`` with ``th = arccos(rho)``; ``kappa(1) = 1/(2d)``.
    """
    xp = array_namespace(rho)
    return kappa_into(xp.array(rho, dtype=xp.float64, copy=True), d)


# Elements per pass on the CPU: the temporaries stay in cache (a fused kernel by hand).
_CHUNK = 1 << 15
_POOLS: dict = {}  # thread count -> executor, for the CPU's kappa_into
log = logging.getLogger("rfw2s")


def _cuda_clamp(v: str) -> str:
    """``v`` clipped to [-1, 1] in CUDA C, NaN kept: ``fmin``/``fmax`` return the other operand
    for NaN, which would turn a NaN inner product into a finite kernel value (NumPy's clip,
    on the CPU, keeps it, and the solvers' non-finite checks raise)."""
    return f"({v} > 1.0 ? 1.0 : ({v} < -1.0 ? -1.0 : {v}))"


# kappa of a clipped inner product ``x`` in CUDA C (ElementwiseKernel and RawKernel alike).
_CUDA_KAPPA_EXPRESSION = "(sqrt((1.0 - x) * (1.0 + x)) + x * acos(-x)) * scale"
_CUDA_KERNELS: dict = {}  # compiled on first use: "kappa", ("product", lanes), ("fused", dim, lanes)
_LOGGED: set = set()  # fallbacks already logged (once per shape, not at every Lanczos step)


def _log_once(key, message: str, *args) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.info(message, *args)


# The matrix-free product's kernel: a tile ``T`` of inner products (``rows x M``) read once,
# ``kappa`` applied and multiplied by the Lanczos block ``X`` (``M x LANES``, row-major), so
# the kernel values are never written back and read again (half the tile's memory traffic).
# Thread (lane, slice, row group) sums ``kappa(T[i, j]) X[j, v]`` over the columns ``j``
# of its slice congruent to its lane mod 32 (a warp reads 32 consecutive doubles of a row),
# for ROWS rows at once (each row of ``X`` is loaded once for ROWS products); it writes
# ``partial[slice * 32 + lane, i, v]``, summed over the first axis afterwards. No shared
# memory, synchronisation or atomics: the result is deterministic, and the source runs as
# ordinary C++ thread by thread (tests/test_cuda_source.py checks it so, without a GPU).
KAPPA_PRODUCT_SOURCE = r"""
extern "C" __global__ void rfw2s_relu_kappa_product(
    const double* __restrict__ T, const double* __restrict__ X, double* __restrict__ partial,
    const long long rows, const long long M, const long long slice_width, const double scale)
{
    const long long thread = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long lane = thread % 32;
    const long long warp = thread / 32;
    const long long groups = (rows + ROWS - 1) / ROWS;
    const long long group = warp % groups;
    const long long slice = warp / groups;
    if (slice * slice_width >= M) return;
    const long long row0 = group * ROWS;
    const long long row_count = rows - row0 < ROWS ? rows - row0 : ROWS;
    const long long stop = (slice + 1) * slice_width < M ? (slice + 1) * slice_width : M;
    double acc[ROWS][LANES];
    // Constant trip counts, unrolled: acc and xv stay in registers.
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
#pragma unroll
        for (int v = 0; v < LANES; ++v) acc[r][v] = 0.0;
    for (long long j = slice * slice_width + lane; j < stop; j += 32) {
        double xv[LANES];
#pragma unroll
        for (int v = 0; v < LANES; ++v) xv[v] = X[j * LANES + v];
#pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            if (r < row_count) {
                const double t = T[(row0 + r) * M + j];
                const double x = CLAMP(t);
                const double k = KAPPA;
#pragma unroll
                for (int v = 0; v < LANES; ++v) acc[r][v] += k * xv[v];
            }
        }
    }
    double* out = partial + (slice * 32 + lane) * rows * LANES;
#pragma unroll
    for (int r = 0; r < ROWS; ++r)
        if (r < row_count)
#pragma unroll
            for (int v = 0; v < LANES; ++v) out[(row0 + r) * LANES + v] = acc[r][v];
}
"""
# Launch shape, measured on an H200 (bench/RESULTS.md, 2026-11-28; seconds per product
# with 6 vectors at M = 131072, rows x block x warps): 8x128x4096 0.284, 4x128x8192 0.208,
# 2x128x16384 0.171, 1x256x32768 0.155, plain tiles (cuBLAS, kernel function in place,
# cuBLAS) 0.168. One row per thread keeps registers few and the SMs full of warps; 32768
# warps make 16 slices of a 2048-row tile (``partial``: 50 MB, 2.5% of the tile's bytes).
PRODUCT_ROWS = 1
PRODUCT_WARPS = 32768
PRODUCT_BLOCK = 256
# The widest block the product kernel takes: each thread holds 2 LANES doubles (its sums and
# a row of X). nvcc 13.0 for sm_90 (this repository's CPU machine, 2026-12-06): 60 registers
# at 6 columns, 100 at 16, 160 at 32, none spilled; at 64 all 255 and 168 bytes spilled. Wider
# blocks (a finite-sample check multiplies H by 10 steps of the Lanczos block at once: 20-120
# columns) take the kernel function in place and cuBLAS's product on the tile instead: their
# product is 2 p flops an element, where the tensor cores' rate pays back the tile's traffic.
PRODUCT_MAX_LANES = 32


def kappa_product_source(lanes: int) -> str:
    """:data:`KAPPA_PRODUCT_SOURCE` for a block of ``lanes`` vectors."""
    return (f"#define ROWS {PRODUCT_ROWS}\n#define LANES {int(lanes)}\n#define CLAMP(v) {_cuda_clamp('(v)')}\n"
            f"#define KAPPA ({_CUDA_KAPPA_EXPRESSION})\n" + KAPPA_PRODUCT_SOURCE)


def product_launch(rows: int, M: int) -> tuple[int, int, int]:
    """``(slices, slice_width, threads)`` of the product kernel for a ``rows x M`` tile:
    slices of whole warps' column strides, about PRODUCT_WARPS warps in all."""
    groups = -(-rows // PRODUCT_ROWS)
    slices = max(1, min(-(-M // 32), -(-PRODUCT_WARPS // groups)))
    slice_width = 32 * -(-M // (32 * slices))
    slices = -(-M // slice_width)
    return slices, slice_width, slices * groups * 32


def kappa_product_into(T, X, d: int, out):
    """``out[...] = kappa(T) @ X`` on CuPy in one pass over ``T`` (a C-contiguous tile of
    inner products, ``rows x M``; ``X`` is ``M x lanes``): :data:`KAPPA_PRODUCT_SOURCE`. A
    block wider than PRODUCT_MAX_LANES: ``kappa`` in place on ``T`` (it is overwritten), then
    cuBLAS."""
    import cupy

    rows, M = T.shape
    lanes = X.shape[1]
    if T.dtype != cupy.float64 or not T.flags.c_contiguous or X.shape[0] != M:
        raise ValueError(f"kappa_product_into needs a C-contiguous float64 tile and a block with as many "
                         f"rows as the tile has columns; got {T.dtype} {T.shape}, block {X.shape}")
    if lanes > PRODUCT_MAX_LANES:
        _log_once(("product", lanes), "rfw2s: a block of %d columns is wider than the product kernel's %d (its "
                  "registers would spill): kernel function in place, then cuBLAS", lanes, PRODUCT_MAX_LANES)
        return cupy.matmul(kappa_into(T, d), X, out=out)
    key = ("product", lanes)
    if key not in _CUDA_KERNELS:
        _CUDA_KERNELS[key] = cupy.RawKernel(kappa_product_source(lanes), "rfw2s_relu_kappa_product")
    slices, slice_width, threads = product_launch(rows, M)
    partial = cupy.empty((slices * 32, rows, lanes))
    X = cupy.ascontiguousarray(X, dtype=cupy.float64)  # the Lanczos block already is: no copy
    _CUDA_KERNELS[key]((-(-threads // PRODUCT_BLOCK),), (PRODUCT_BLOCK,),
                       (T, X, partial, np.int64(rows), np.int64(M), np.int64(slice_width),
                        np.float64(1.0 / (2.0 * math.pi * d))))
    return partial.sum(axis=0, out=out)


# The matrix-free product with the inner products inside: ``Y = kappa(A B^T) X`` for feature
# rows ``A`` (``rows x DIM``) and ``B`` (``M x DIM``), ``X`` (``M x ldx``), no tile of inner
# products written anywhere, so a step costs its arithmetic. A block of FUSED_THREADS threads
# owns FUSED_SPAN rows of ``A`` and one group of LANES columns of ``X`` (block index = group
# x row blocks + row block: a 2-D grid in one dimension). It sweeps ``B`` and ``X`` in chunks
# of FUSED_SPAN rows, and the coordinates in chunks of KCHUNK, each staged in shared memory
# in turn (``A``'s rows too where DIM > KCHUNK, else once): the shared memory is the same for
# every DIM and every number of columns. Thread (ty, tx) of the 16 x 16 block computes a 4 x 4
# micro-tile of inner products, rows ty + 16 r and columns tx + 16 c (stride 16 in the
# k-major staged copies: no shared-memory bank conflicts), applies ``kappa`` and accumulates
# its rows' products with its group's columns of ``X``; it writes ``partial[tx, i, lane0 + v]``,
# summed over the first axis afterwards (deterministic: no atomics). tests/test_cuda_source.py
# runs it as C++ with real threads and barriers, and compiles it with nvcc.
KAPPA_FUSED_SOURCE = r"""
#define TILE 16
#define MICRO 4
#define SPAN (TILE * MICRO)
extern "C" __global__ void rfw2s_relu_kappa_fused(
    const double* __restrict__ A, const double* __restrict__ B, const double* __restrict__ X,
    double* __restrict__ partial, const long long rows, const long long M, const long long ldx,
    const double scale)
{
    __shared__ double a_s[KCHUNK * SPAN];    // k-major: a_s[k * SPAN + row], coordinates k0 + k
    __shared__ double b_s[KCHUNK * SPAN];    // k-major: b_s[k * SPAN + column]
    __shared__ double x_s[SPAN * LANES];     // x_s[column * LANES + v]
    const int t = threadIdx.x;
    const int tx = t % TILE, ty = t / TILE;
    const long long row_blocks = (rows + SPAN - 1) / SPAN;
    const long long row0 = (long long)(blockIdx.x % row_blocks) * SPAN;
    const long long lane0 = (long long)(blockIdx.x / row_blocks) * LANES;
    double acc[MICRO][LANES];
#pragma unroll
    for (int r = 0; r < MICRO; ++r)
#pragma unroll
        for (int v = 0; v < LANES; ++v) acc[r][v] = 0.0;
    for (long long c0 = 0; c0 < M; c0 += SPAN) {
        double dot[MICRO][MICRO];
#pragma unroll
        for (int r = 0; r < MICRO; ++r)
#pragma unroll
            for (int c = 0; c < MICRO; ++c) dot[r][c] = 0.0;
        for (int k0 = 0; k0 < DIM; k0 += KCHUNK) {
            const int kc = DIM - k0 < KCHUNK ? DIM - k0 : KCHUNK;
            __syncthreads();  // the previous chunk is consumed
            if (DIM > KCHUNK || c0 == 0)  // coalesced: k fastest in global memory
                for (int e = t; e < SPAN * kc; e += TILE * TILE) {
                    const long long i = row0 + e / kc;
                    a_s[(e % kc) * SPAN + e / kc] = i < rows ? A[i * DIM + k0 + e % kc] : 0.0;
                }
            for (int e = t; e < SPAN * kc; e += TILE * TILE) {
                const long long j = c0 + e / kc;
                b_s[(e % kc) * SPAN + e / kc] = j < M ? B[j * DIM + k0 + e % kc] : 0.0;
            }
            if (k0 == 0)
                for (int e = t; e < SPAN * LANES; e += TILE * TILE) {
                    const long long j = c0 + e / LANES;
                    x_s[e] = j < M ? X[j * ldx + lane0 + e % LANES] : 0.0;  // 0 past the end: no contribution
                }
            __syncthreads();
#pragma unroll 8
            for (int k = 0; k < kc; ++k) {
                double a[MICRO], b[MICRO];
#pragma unroll
                for (int r = 0; r < MICRO; ++r) a[r] = a_s[k * SPAN + ty + TILE * r];
#pragma unroll
                for (int c = 0; c < MICRO; ++c) b[c] = b_s[k * SPAN + tx + TILE * c];
#pragma unroll
                for (int r = 0; r < MICRO; ++r)
#pragma unroll
                    for (int c = 0; c < MICRO; ++c) dot[r][c] += a[r] * b[c];
            }
        }
        // x_s stays until the next chunk's first barrier.
#pragma unroll
        for (int c = 0; c < MICRO; ++c) {
            double xv[LANES];
#pragma unroll
            for (int v = 0; v < LANES; ++v) xv[v] = x_s[(tx + TILE * c) * LANES + v];
#pragma unroll
            for (int r = 0; r < MICRO; ++r) {
                const double x = CLAMP(dot[r][c]);
                const double k = KAPPA;
#pragma unroll
                for (int v = 0; v < LANES; ++v) acc[r][v] += k * xv[v];
            }
        }
    }
#pragma unroll
    for (int r = 0; r < MICRO; ++r) {
        const long long i = row0 + ty + TILE * r;
        if (i < rows)
#pragma unroll
            for (int v = 0; v < LANES; ++v) partial[(tx * rows + i) * ldx + lane0 + v] = acc[r][v];
    }
}
"""
FUSED_THREADS = 256  # TILE x TILE
FUSED_SPAN = 64  # rows of A per block, and of B per chunk: TILE x MICRO
FUSED_TILE = 16  # the first axis of ``partial``: one partial sum per tx
# Coordinates staged at a time: 32 fills the staged rows of A and B with 32 KiB (4 KiB more
# for 8 columns of X), under the 48 KiB of static shared memory a block may have; DIM <= 32
# (the shipped configs) stages A's rows once.
FUSED_K_CHUNK = 32
# Columns of X per block (a group): each thread holds 4 x LANES sums and LANES values of X.
# nvcc 13.0 for sm_90 (this repository's CPU machine, 2026-12-06), d = 32: 166 registers at 6
# columns, 204 at 8, 238 at 12, and at 16 all 255 and 220 bytes spilled; 8 leaves room at
# every d from 2 to 128 (tests/test_cuda_source.py prints each shape's numbers).
FUSED_LANES = 8
# Each further group recomputes every inner product and kappa (2 d + ~40 flops an element:
# 104 at d = 32). The tile path instead writes and reads a tile (16 bytes an element: about
# 160 FP64 operations' time at an H100's 34 TFLOP/s and 3.35 TB/s, vendor figures;
# docs/performance.md, GPU): a second group costs less than that, a third more, so a block of
# more columns takes the tile path, logged.
FUSED_MAX_GROUPS = 2
# The matrix-free product by KAPPA_FUSED_SOURCE (one launch, no tiles) instead of tiles of
# cuBLAS inner products read by KAPPA_PRODUCT_SOURCE: off until it is measured faster on a
# GPU (bench/device_check.sh, stage products, times both against their floors).
FUSED_INNER_PRODUCTS = False


def fused_groups(lanes: int) -> tuple[int, int]:
    """``(columns per group, groups)`` of the fused kernel for a block of ``lanes`` columns:
    one group of all of them up to FUSED_LANES, else groups of FUSED_LANES (the last padded)."""
    group = min(int(lanes), FUSED_LANES)
    return group, -(-int(lanes) // group)


def kappa_fused_source(dim: int, lanes: int) -> str:
    """:data:`KAPPA_FUSED_SOURCE` for features of ``dim`` coordinates and groups of ``lanes``
    columns."""
    return (f"#define DIM {int(dim)}\n#define LANES {int(lanes)}\n#define KCHUNK {FUSED_K_CHUNK}\n"
            f"#define CLAMP(v) {_cuda_clamp('(v)')}\n#define KAPPA ({_CUDA_KAPPA_EXPRESSION})\n"
            + KAPPA_FUSED_SOURCE)


def kappa_fused_product_into(A, B, X, d: int, out):
    """``out[...] = kappa(A B^T) @ X`` on CuPy with the inner products inside the kernel
    (:data:`KAPPA_FUSED_SOURCE`): ``A`` (``rows x dim``) and ``B`` (``M x dim``) feature rows,
    ``X`` (``M x lanes``); ``d`` is the kernel function's dimension (its scale). A block of more
    than FUSED_MAX_GROUPS groups of columns takes the tile path instead (logged)."""
    import cupy

    rows, dim = A.shape
    M, lanes = X.shape
    if B.shape != (M, dim) or any(a.dtype != cupy.float64 for a in (A, B, X)):
        raise ValueError(f"kappa_fused_product_into needs float64 rows A ({rows} x dim), B (M x dim) and X "
                         f"(M x lanes); got {A.shape}, {B.shape}, {X.shape}")
    group, groups = fused_groups(lanes)
    if groups > FUSED_MAX_GROUPS:
        _log_once(("fused", lanes), "rfw2s: a block of %d columns needs %d groups of the fused kernel's %d, each "
                  "recomputing the inner products: tiles of inner products (cuBLAS) read by the product kernel "
                  "instead", lanes, groups, group)
        return _tile_product(A, B, X, d, out)
    key = ("fused", dim, group)
    if key not in _CUDA_KERNELS:
        _CUDA_KERNELS[key] = cupy.RawKernel(kappa_fused_source(dim, group), "rfw2s_relu_kappa_fused")
    A, B, X = (cupy.ascontiguousarray(a) for a in (A, B, X))
    ldx = group * groups
    if ldx != lanes:  # whole groups: the last one padded with zero columns
        X = cupy.concatenate([X, cupy.zeros((M, ldx - lanes))], axis=1)
    partial = cupy.empty((FUSED_TILE, rows, ldx))
    _CUDA_KERNELS[key]((groups * -(-rows // FUSED_SPAN),), (FUSED_THREADS,),
                       (A, B, X, partial, np.int64(rows), np.int64(M), np.int64(ldx),
                        np.float64(1.0 / (2.0 * math.pi * d))))
    if ldx == lanes:
        return partial.sum(axis=0, out=out)
    out[...] = partial.sum(axis=0)[:, :lanes]
    return out


def _tile_product(A, B, X, d: int, out):
    """``out[...] = kappa(A B^T) @ X`` by tiles of TILE_ROWS rows: cuBLAS's inner products, then
    :func:`kappa_product_into` (the fused kernel's fallback)."""
    import cupy

    from ...resources import TILE_ROWS

    rows, M = A.shape[0], B.shape[0]
    work = cupy.empty((min(TILE_ROWS, rows), M))
    for r0 in range(0, rows, TILE_ROWS):
        r1 = min(r0 + TILE_ROWS, rows)
        tile = work[:r1 - r0]
        cupy.matmul(A[r0:r1], B.T, out=tile)
        kappa_product_into(tile, X, d, out[r0:r1])
    return out


def cuda_sources(dims, lanes) -> dict[str, str]:
    """Every raw CUDA source the CuPy path compiles for features of each of ``dims``
    coordinates and blocks of each of ``lanes`` columns, by name (``product_l6``,
    ``fused_d32_l6``); a block that takes a fallback adds the sources the fallback uses."""
    sources = {}
    for p in lanes:
        if p <= PRODUCT_MAX_LANES:
            sources[f"product_l{p}"] = kappa_product_source(p)
        group, groups = fused_groups(p)
        if groups > FUSED_MAX_GROUPS:  # the tile path: the product kernel at full width, or cuBLAS
            continue
        for d in dims:
            sources[f"fused_d{d}_l{group}"] = kappa_fused_source(d, group)
    return sources


_PTXAS = {"registers": r"Used (\d+) registers", "spill_stores": r"(\d+) bytes spill stores",
          "spill_loads": r"(\d+) bytes spill loads", "stack": r"(\d+) bytes stack frame",
          "shared": r"(\d+) bytes smem"}


def ptxas_usage(sources: dict, arch: str = "sm_90", nvcc: str = "nvcc") -> dict:
    """``{name: {registers, spill_stores, spill_loads, stack, shared}}`` (bytes but registers)
    of each CUDA source as ``nvcc -Xptxas -v`` compiles it for ``arch``, several to an nvcc run
    (each entry renamed after its source), the runs on every core; ``{name: {"error": ...}}``
    for a source that does not compile."""
    names = list(sources)
    parts = max(1, min(len(names) // 8, usable_cores()))
    with ThreadPoolExecutor(parts) as pool:
        found = pool.map(lambda k: _ptxas_run({n: sources[n] for n in names[k::parts]}, arch, nvcc), range(parts))
    return {name: numbers for part in found for name, numbers in part.items()}


def _ptxas_run(sources: dict, arch: str, nvcc: str) -> dict:
    """:func:`ptxas_usage` of ``sources`` in one nvcc run (one run each where it fails)."""
    import re
    import subprocess
    import tempfile

    entries, text = {}, []  # renamed entry function -> the source's name; the sources, renamed
    for name, source in sources.items():
        text += [f"#undef {m}" for m in ("ROWS", "LANES", "DIM", "KCHUNK", "CLAMP", "KAPPA", "TILE", "MICRO", "SPAN")]
        entry = re.search(r'extern "C" __global__ void (\w+)\(', source).group(1)
        entries[f"{entry}__{name}"] = name
        text.append(source.replace(f"{entry}(", f"{entry}__{name}("))
    with tempfile.TemporaryDirectory() as folder:
        with open(f"{folder}/kernels.cu", "w") as fh:
            fh.write("\n".join(text))
        result = subprocess.run([nvcc, f"-arch={arch}", "-Xptxas", "-v", "-c", "-o", f"{folder}/kernels.o",
                                 f"{folder}/kernels.cu"], capture_output=True, text=True)
    if result.returncode:
        if len(sources) == 1:
            return {name: {"error": result.stderr.strip()[-500:]} for name in sources}
        return {name: numbers for one in sources for name, numbers in
                _ptxas_run({one: sources[one]}, arch, nvcc).items()}
    usage = {}
    for part in result.stderr.split("Compiling entry function '")[1:]:
        usage[entries[part.split("'", 1)[0]]] = {key: int(m.group(1)) if (m := re.search(pattern, part)) else 0
                                                  for key, pattern in _PTXAS.items()}
    return usage


def kappa_into(R, d: int):
    """:func:`kappa` of every element of ``R`` (float64), in place: no matrix-sized
    temporaries, so tiles of the kernel cost their arithmetic, not allocations.

    ``sqrt((1 - rho)(1 + rho)) + rho * arccos(-rho)``: the same function, written so that
    nothing cancels near ``rho = -1`` (within 3 ulps of 40-digit values; ``pi - th`` and
    ``1 - rho^2`` there lose 4e-16); ``rho`` is clipped to [-1, 1] against round-off in
    the inner products. On CuPy one fused kernel.
    """
    xp = array_namespace(R)
    if R.dtype != xp.float64 or not R.flags.c_contiguous:
        raise ValueError(f"kappa_into needs a C-contiguous float64 array; got {R.dtype}, "
                         f"contiguous={R.flags.c_contiguous}")
    scale = 1.0 / (2.0 * math.pi * d)
    if xp.__name__ == "cupy":
        if "kappa" not in _CUDA_KERNELS:
            # ``k`` is read and written in place (an output parameter, like ``y += x``).
            _CUDA_KERNELS["kappa"] = xp.ElementwiseKernel(
                "float64 scale", "float64 k",
                f"double x = {_cuda_clamp('k')}; k = {_CUDA_KAPPA_EXPRESSION};",
                "rfw2s_relu_kappa")
        _CUDA_KERNELS["kappa"](scale, R)
        return R
    flat = R.reshape(-1)  # a view, R being contiguous
    threads = min(usable_cores(), flat.size // _CHUNK)
    if threads <= 1:
        _kappa_chunks(flat, scale)
        return R
    if threads not in _POOLS:
        _POOLS[threads] = ThreadPoolExecutor(threads)
    # NumPy's ufuncs release the GIL: each thread takes a contiguous share of the chunks.
    list(_POOLS[threads].map(lambda part: _kappa_chunks(part, scale), np.array_split(flat, threads)))
    return R


def _kappa_chunks(flat, scale: float) -> None:
    """The CPU's kappa_into on a contiguous 1-D array, chunk by chunk (temporaries in cache)."""
    work = np.empty((2, min(_CHUNK, flat.size)))
    for start in range(0, flat.size, _CHUNK):
        r = flat[start:start + _CHUNK]
        w, v = work[0, :r.size], work[1, :r.size]
        np.clip(r, -1.0, 1.0, out=r)
        np.negative(r, out=w)
        np.arccos(w, out=w)
        w *= r
        np.subtract(1.0, r, out=v)
        r += 1.0
        r *= v
        np.sqrt(r, out=r)
        r += w
        r *= scale
