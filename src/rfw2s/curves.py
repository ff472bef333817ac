"""The student's kernel ``H = G_ST / M`` as an operator, and the exact finite-width loss
curves of every teacher of one student draw through it.

How a curve job reaches ``H`` is one choice, an *operator* (made once by :mod:`rfw2s.plan`):

* ``eigh``: the dense eigendecomposition (:mod:`rfw2s.dense`), the reference;
* ``cached``: Lanczos quadrature (:mod:`rfw2s.krylov`) on a kernel matrix a kernel job wrote;
* ``stored``: Lanczos on the kernel built in the job and held in memory (on the CPU as its
  block rows on and above the diagonal, :class:`UpperPanels`);
* ``tiled``: Lanczos on kernel tiles rebuilt at every step, never stored (matrix-free).
"""
from __future__ import annotations

import ctypes
import dataclasses
import functools
import glob
import importlib.machinery
import importlib.metadata
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import operators
from .backend import array_namespace, as_backend, one_blas_thread
from .dense import student_spectrum
from .krylov import LANCZOS_DEFAULTS, lanczos_curves
from .machine import usable_cores
from .resources import TILE_ROWS
from .spectral import Curves, SameKernel, evaluate

log = logging.getLogger("rfw2s")

# Bump when a change alters the numbers of a kernel (gram_matrix, gram_tiles, a model's
# gram_into) or of the curves (the solvers, the infinite-width series, the curve tables).
KERNEL_VERSION = "1"
CURVES_VERSION = "6"
# From about this feature dimension on, a kernel element's cost is its matrix product
# (2 d flops), not the kernel function (~40 operations) or its 8 bytes of memory traffic.
# Measured with OpenBLAS on the 2-core CPU machine: from there on the symmetric product
# (syrk, half the flops) beats gemm by row tiles (4096 wide: 0.34 vs 0.46 s at d = 1448;
# 0.19 vs 0.15 s at d = 512; 16384 wide at d = 32: 1.6 vs 0.19 s), and building a kernel
# costs more than writing it and reading it back (8192 wide at d = 4096: 2.8 s to build,
# about 2 s to write and read; 16384 wide at d = 32: 1 s to build, 7-8 s to write and read).
PRODUCT_BOUND_DIM = 1024
LAYOUTS = ("whole", "tiles")


def kernel_layout(d: int) -> str:
    """How a whole kernel of features in dimension ``d`` is built: ``whole`` (one symmetric
    product) where the matrix product dominates, else ``tiles`` (one tile of rows at a time)."""
    return "whole" if d >= PRODUCT_BOUND_DIM else "tiles"


def _fill(model, rows, columns, out):
    """``out[...] = gram(rows, columns)``: in place where the model has ``gram_into``."""
    into = getattr(model, "gram_into", None)
    if into is not None:
        into(rows, columns, out)
    else:
        out[...] = model.gram(rows, columns)


def _product(model, rows, columns, X, work, out):
    """``out[...] = gram(rows, columns) @ X``, ``work`` a scratch tile: in one pass where the
    model fuses the kernel function with the product (``gram_product_into``)."""
    into = getattr(model, "gram_product_into", None)
    if into is not None:
        into(rows, columns, X, work, out)
    else:
        _fill(model, rows, columns, work)
        array_namespace(work).matmul(work, X, out=out)


def _columns(W):
    """``W`` as the column operand of kernel tiles ``gram(rows, W)``. NumPy computes
    ``A @ A.T`` on one buffer by syrk, 8x slower than gemm at small ``d`` (matrix-free
    Lanczos at M = 2048, one tile: 3.2 -> 1.9 s), so below PRODUCT_BOUND_DIM the columns
    are a copy (``M x d``: cheap) and every tile stays on gemm."""
    if W.shape[1] < PRODUCT_BOUND_DIM and array_namespace(W).__name__ == "numpy":
        return W.copy()
    return W


# Rows of a stored panel on the CPU: a block row of the kernel on and above its diagonal.
SYMMETRIC_BLOCK = 512


class UpperPanels:
    """A symmetric kernel stored by its block rows on and above the diagonal: panel ``i`` is
    ``G[r0:r1, r0:]`` with ``r0 = i * SYMMETRIC_BLOCK``. Half the memory, arithmetic and
    fresh pages of the whole matrix, and all that the CPU's symmetric product reads."""

    def __init__(self, model, W, block: int = SYMMETRIC_BLOCK):
        M = W.shape[0]
        self.edges = self.panel_edges(M, block)
        columns = _columns(W)
        self.panels = []
        for r0, r1 in zip(self.edges[:-1], self.edges[1:]):
            self.panels.append(np.empty((r1 - r0, M - r0)))
            _fill(model, W[r0:r1], columns[r0:], self.panels[-1])

    @staticmethod
    def panel_edges(M: int, block: int = SYMMETRIC_BLOCK) -> list[int]:
        """First row of each panel, then ``M``."""
        return list(range(0, M, block)) + [M]

    @classmethod
    def of_panels(cls, edges: list[int], panels: list) -> "UpperPanels":
        """Panels already computed: ``panels[i]`` is ``G[edges[i]:edges[i + 1], edges[i]:]``."""
        stored = object.__new__(cls)
        stored.edges, stored.panels = edges, panels
        return stored

    @classmethod
    def of_matrix(cls, G, block: int = SYMMETRIC_BLOCK) -> "UpperPanels":
        """The upper panels of a symmetric matrix already formed, as views into it."""
        edges = cls.panel_edges(G.shape[0], block)
        return cls.of_panels(edges, [G[r0:r1, r0:] for r0, r1 in zip(edges[:-1], edges[1:])])


def stored_kernel(model, W):
    """The kernel of the features ``W`` held in memory for Lanczos: its upper panels on the
    CPU (:class:`UpperPanels`), the whole matrix on a GPU (one product per step is fastest
    there)."""
    if array_namespace(W).__name__ == "numpy":
        return UpperPanels(model, W)
    return gram_matrix(model, W, kernel_layout(W.shape[1]))


def _cache_bytes(level: int, default: int) -> int:
    """The size of this CPU's level-``level`` data cache (Linux sysfs), or ``default``."""
    for index in sorted(glob.glob("/sys/devices/system/cpu/cpu0/cache/index*")):
        try:
            if int(open(f"{index}/level").read()) == level and open(f"{index}/type").read().strip() != "Instruction":
                size = open(f"{index}/size").read().strip()
                return int(size[:-1]) * {"K": 1 << 10, "M": 1 << 20}[size[-1]] if size[-1] in "KM" else int(size)
        except (OSError, ValueError):
            continue
    return default


def chunk_columns(rows: int) -> int:
    """Columns of a panel chunk the symmetric product uses for both of its products while it is
    in cache: a chunk of ``rows`` rows as large as one core's L2 (read from the machine; 1 MiB
    if unknown), a multiple of 64 columns. On the 2-core CPU machine (1 MiB L2): 256 columns
    of 512 rows, the fastest of 128, 256 and 512 measured (bench/benchmark.py --symmetric)."""
    columns = _cache_bytes(2, 1 << 20) // (8 * rows)
    return max(64, columns // 64 * 64)


_POOLS: dict = {}  # worker count -> executor of the CPU's symmetric product


def summed_on_cores(part, shares, X):
    """``sum(part(share, X) for share in shares)``, each share on a worker of its own with BLAS
    at one thread inside (BLAS threads of their own would oversubscribe the cores); a single
    share runs in this thread, BLAS as it is. A product built on it owns the cores."""
    if len(shares) == 1:
        return part(shares[0], X)
    if len(shares) not in _POOLS:
        _POOLS[len(shares)] = ThreadPoolExecutor(len(shares))
    with one_blas_thread():
        return sum(_POOLS[len(shares)].map(lambda share: part(share, X), shares))


def _balanced_shares(widths, workers: int) -> list[list[int]]:
    """Panels (of ``widths`` columns each) split among ``workers`` with about equal columns each."""
    shares, loads = [[] for _ in range(workers)], [0] * workers
    for i in sorted(range(len(widths)), key=lambda i: -widths[i]):
        k = loads.index(min(loads))
        shares[k].append(i)
        loads[k] += widths[i]
    return [sorted(share) for share in shares if share]


PANEL_ABI = 1  # panel_abi() of the _panel_kernel.c this code calls


def panel_libraries(here: str = os.path.dirname(__file__)) -> list[str]:
    """Where the compiled panel product may be, this interpreter's builds first: beside this
    source (the editable install; a build for another Python serves too, being plain C loaded
    by ctypes, as in a conda environment of another Python version), then in an installed
    copy of the package (``pip install .`` while the jobs run this source)."""
    found = sorted(glob.glob(os.path.join(here, "_panel_kernel*.so")))
    # Every copy: the source's own egg-info, on the jobs' path first, lists no built library.
    installed = []
    for dist in importlib.metadata.distributions(name=__package__):
        try:
            installed += dist.files or []
        except (OSError, ValueError):  # a damaged install record: that copy is not searched
            continue
    found += sorted(str(f.locate()) for f in installed if f.name.startswith("_panel_kernel") and f.suffix == ".so")
    found = list(dict.fromkeys(os.path.realpath(f) for f in found if os.path.isfile(f)))
    # This interpreter's builds first, wherever they are (the sort is stable).
    return sorted(found, key=lambda f: not f.endswith(importlib.machinery.EXTENSION_SUFFIXES[0]))


@functools.cache
def panel_kernel():
    """The compiled panel product (``_panel_kernel.c``) through ctypes, or ``None`` where the
    install could not compile it (no C compiler) or this CPU has no vector unit it is built
    for (x86-64 with AVX2 and FMA): then the product runs on BLAS."""
    library = None
    for path in panel_libraries():  # the first of this build that loads; the others are skipped
        try:
            candidate = ctypes.CDLL(path)
        except OSError as exc:  # another machine's build (a source tree shared across CPUs)
            log.warning("rfw2s: %s does not load here (%s); not used", path, exc)
            continue
        abi = candidate.panel_abi() if hasattr(candidate, "panel_abi") else None
        if abi == PANEL_ABI:
            library = candidate
            break
        log.warning("rfw2s: %s has panel ABI %s, this code needs %s (rebuild: pip install -e .); not used",
                    path, abi, PANEL_ABI)
    if library is None:
        log.info("rfw2s: the compiled panel product is not built here; the symmetric product runs on BLAS")
        return None
    if not library.panel_vectorised():
        log.info("rfw2s: no AVX2 and FMA on this CPU; the symmetric product runs on BLAS")
        return None
    pointer, size = ctypes.c_void_p, ctypes.c_ssize_t
    library.panel_product.argtypes = [pointer, size, size, size, size, pointer, pointer, size, size]
    library.panel_product.restype = None
    return library


def _kernel_share_product(kernel, edges, panels, width):
    """``(share, X) -> sum over the share's panels of their part of G @ X`` by the compiled
    kernel, both products of each panel element in one pass; ``X`` has columns a multiple of
    the kernel's group."""

    def share_product(share, X):
        Y = np.zeros_like(X)
        for i in share:
            panel = panels[i]
            kernel.panel_product(panel.ctypes.data, panel.shape[0], panel.shape[1], panel.strides[0] // 8, edges[i],
                                 X.ctypes.data, Y.ctypes.data, X.shape[1], width)
        return Y

    return share_product


def _blas_share_product(M, edges, panels, width):
    """As :func:`_kernel_share_product`, by BLAS: two narrow products per chunk (the diagonal
    block's one), the chunk in cache for both."""

    def share_product(share, X):
        Y = np.zeros((M, X.shape[1]))
        YT = np.zeros((X.shape[1], M))
        for i in share:
            r0, r1 = edges[i], edges[i + 1]
            panel, rows = panels[i], r1 - r0
            X_rows_T = np.ascontiguousarray(X[r0:r1].T)
            for c in range(0, rows, width):  # the diagonal block, stored whole: one product
                Y[r0:r1] += panel[:, c:min(c + width, rows)] @ X[r0 + c:r0 + min(c + width, rows)]
            for c in range(rows, panel.shape[1], width):  # above it: both products while in cache
                chunk = panel[:, c:c + width]
                Y[r0:r1] += chunk @ X[r0 + c:r0 + c + width]
                YT[:, r0 + c:r0 + c + width] += X_rows_T @ chunk
        Y += YT.T
        return Y

    return share_product


def dense_matvec(G, M: int, divisor: float | None = None):
    """``X -> H @ X`` for a stored symmetric kernel ``G`` (``M x M``; ``H = G / M``, or
    ``G / divisor``): a matrix, or :class:`UpperPanels`.

    On the CPU only the block rows on and above the diagonal are read, each once per product,
    on every core, each with its own share of the panels: by the compiled kernel
    (:func:`panel_kernel`), which uses each stored element for both of its products as it
    reads it (about one streaming pass over the stored bytes for 2 to 16 vectors on the 2-core
    CPU machine: bench/benchmark.py --symmetric), else by BLAS in chunks of
    :func:`chunk_columns` that serve both products while in cache (a chunk above the diagonal
    block gives ``Y_rows += B X_cols`` and ``Y_cols^T += X_rows^T B``; 1.7x the pass for 16
    vectors, the narrow products' packing and arithmetic exceeding the pass). On a GPU one
    matrix product is fastest.
    """
    divisor = M if divisor is None else divisor
    if not isinstance(G, UpperPanels):
        if array_namespace(G).__name__ != "numpy":
            return lambda X: (G @ X) / divisor
        G = UpperPanels.of_matrix(np.ascontiguousarray(G, dtype=np.float64))
    edges, panels = G.edges, G.panels
    shapes = [(r1 - r0, M - r0) for r0, r1 in zip(edges[:-1], edges[1:])]
    if edges[0] != 0 or edges[-1] != M or [p.shape for p in panels] != shapes:
        raise ValueError(f"the stored kernel's panels do not tile a {M} x {M} matrix: rows {edges[0]}..{edges[-1]}, "
                         f"panel shapes {[p.shape for p in panels][:3]}... (expected {shapes[:3]}...)")
    width = chunk_columns(SYMMETRIC_BLOCK)
    shares = _balanced_shares([p.shape[1] for p in panels], usable_cores())
    kernel = panel_kernel()
    if kernel is not None and all(p.dtype == np.float64 and p.strides[1] == 8 and p.strides[0] % 8 == 0
                                  and p.strides[0] >= 8 * p.shape[1] for p in panels):  # rows of contiguous doubles
        group = kernel.panel_group()
        share_product = _kernel_share_product(kernel, edges, panels, width)

        def matvec(X):
            # C reads whatever it is given: a wrong shape or type stops here, as BLAS would.
            if X.ndim != 2 or X.shape[0] != M or not np.isrealobj(X):
                raise ValueError(f"the block multiplied by the kernel must be real, {M} x p; got {X.dtype} {X.shape}")
            p = X.shape[1]
            padded = np.zeros((M, p + -p % group))  # whole groups of columns, contiguous
            padded[:, :p] = X
            Y = summed_on_cores(share_product, shares, padded)[:, :p]
            return Y / divisor
    else:
        share_product = _blas_share_product(M, edges, panels, width)

        def matvec(X):
            Y = summed_on_cores(share_product, shares, X)
            Y /= divisor
            return Y

    # The product's workers own the cores: Lanczos steps around it run their own BLAS at one
    # thread (BLAS's idle threads would spin on those cores: see krylov.run_to_tolerance).
    matvec.owns_cores = len(shares) > 1
    return matvec


def gram_tiles(model, W, tile_rows: int = TILE_ROWS, buffer=None, columns=None):
    """``(start, G[start:start + rows])`` for the kernel of the features ``W``, tile by tile
    in one reused ``buffer`` (each tile is overwritten by the next): fused and in place when
    the model has ``gram_into``, else from its ``gram``. A caller that sweeps the tiles
    repeatedly passes ``columns = _columns(W)`` once."""
    xp = array_namespace(W)
    M = W.shape[0]
    if buffer is None:
        buffer = xp.empty((min(tile_rows, M), M))
    if columns is None:
        columns = _columns(W)
    for start in range(0, M, tile_rows):
        tile = buffer[: min(tile_rows, M - start)]
        _fill(model, W[start:start + tile_rows], columns, tile)
        yield start, tile


def gram_matrix(model, W, layout: str):
    """The whole kernel of the features ``W`` (rows), built in ``layout`` (:func:`kernel_layout`):
    one symmetric product ``gram(W, W)``, or row tiles written in place."""
    if layout not in LAYOUTS:
        raise ValueError(f"a kernel layout is one of {LAYOUTS}; got {layout!r}")
    xp = array_namespace(W)
    M = W.shape[0]
    G = xp.empty((M, M))
    if layout == "whole":
        _fill(model, W, W, G)
        return G
    columns = _columns(W)
    for start in range(0, M, TILE_ROWS):
        _fill(model, W[start:start + TILE_ROWS], columns, G[start:start + TILE_ROWS])
    return G


def tiled_matvec(model, W, M: int, tile_rows: int = TILE_ROWS):
    """``X -> H @ X`` with ``H`` built tile by tile from the features, never stored; on a GPU
    in one launch without tiles where the model offers it (``kernel_product``)."""
    xp = array_namespace(W)
    columns = _columns(W)
    whole = getattr(model, "kernel_product", None) if xp.__name__ != "numpy" else None
    if whole is not None:
        def matvec_whole(X):
            Y = xp.empty((M, X.shape[1]))
            whole(W, columns, X, Y)
            Y /= M
            return Y

        return matvec_whole
    buffer = xp.empty((min(tile_rows, M), M))  # allocated once: every step reuses it

    def matvec(X):
        Y = xp.empty((M, X.shape[1]))
        for start in range(0, M, tile_rows):
            stop = min(start + tile_rows, M)
            _product(model, W[start:stop], columns, X, buffer[:stop - start], Y[start:stop])
        Y /= M
        return Y

    return matvec


def teacher_moments(model, W, teachers):
    """``C[:, i, :] = E[phi_j f_TE,i]`` (``M x teachers x outputs``) of the teachers ``(U, coef)``."""
    xp = array_namespace(W)
    M = W.shape[0]
    q = model.target_moments(W[:1]).reshape(1, -1).shape[1]
    if not teachers:
        return xp.zeros((M, 0, q))
    return xp.stack([(model.gram(W, xp.asarray(U)) @ xp.asarray(coef)).reshape(M, q) for U, coef in teachers], axis=1)


def exact_curves(model, W, teachers, rule, *, operator: str = "stored", backend="numpy", kernel=None,
                 spectrum=None, lanczos: dict | None = None) -> Curves:
    """Curves of the student ``W`` trained by ``rule`` (a filter of :mod:`rfw2s.spectral`) on the
    population, on each teacher ``(U, coef)`` and on the truth (the strong ceiling), through
    ``operator`` (a population operator of :data:`rfw2s.operators.OPERATORS`).

    ``operator="eigh"`` uses ``spectrum = (lam, V)`` of ``H`` if given (else computes it);
    ``"cached"`` needs ``kernel`` (the matrix a kernel job wrote, or :func:`stored_kernel`'s);
    ``"stored"`` builds the kernel here (:func:`stored_kernel`); ``"tiled"`` builds tiles at
    every step. ``lanczos``: ``tol`` and ``max_steps`` of :func:`rfw2s.krylov.lanczos_curves`.
    Accuracies where the model's rows have classes (``model.labels``).
    """
    op = operators.operator(operator)
    if op.trains_on != "population":
        raise ValueError(f"operator must be one of {operators.operators_for('population')}; got {operator!r}")
    if (kernel is not None) != (operator == "cached"):
        raise ValueError("a kernel matrix is given with operator 'cached', and only then")
    be = as_backend(backend)
    xp = be.xp
    M = W.shape[0]
    Wx = be.asarray(W)
    C = teacher_moments(model, Wx, teachers)
    n, q = C.shape[1], C.shape[2]
    m = model.target_moments(Wx).reshape(M, q)
    F = model.target_norm2
    labels = getattr(model, "labels", None)
    values_of = None if labels is None else (lambda vectors: model.project(Wx, vectors) / M)
    with be.linalg_guard():
        if operator == "eigh":
            lam, V = (be.asarray(a) for a in spectrum) if spectrum is not None else student_spectrum(model, Wx,
                                                                                                    backend=be)
            m_hat = V.T @ m
            c_hat = xp.concatenate([(V.T @ C.reshape(M, n * q)).reshape(M, n, q), m_hat[:, None, :]], axis=1)
            terms = SameKernel(c_hat, m_hat, F, M, None if values_of is None else values_of(V))
            return Curves.of(evaluate(rule, lam, terms, labels=labels), op.solver,
                             teacher_accuracy=teacher_accuracy(model, teachers, xp))
        if operator == "tiled":
            matvec = tiled_matvec(model, Wx, M)
        else:
            if operator == "stored":
                start = time.perf_counter()
                stored = stored_kernel(model, Wx)
                be.synchronize()
                log.info("kernel built in memory: M_ST=%d, %.3f s", M, time.perf_counter() - start)
            else:
                stored = kernel if isinstance(kernel, UpperPanels) else be.asarray(kernel)
            matvec = dense_matvec(stored, M)
        curves = lanczos_curves(matvec, M, C, m, F, rule, solver=op.solver, values_of=values_of, labels=labels,
                                **{**LANCZOS_DEFAULTS, **(lanczos or {})})
    return dataclasses.replace(curves, teacher_accuracy=teacher_accuracy(model, teachers, xp))


def teacher_accuracy(model, teachers, xp):
    """Each teacher's accuracy on the model's rows, where they have classes (None elsewhere)."""
    if getattr(model, "labels", None) is None:
        return None
    return np.array([model.accuracy(U, coef, xp=xp) for U, coef in teachers])
