"""Memory and disk checks made by a job before it allocates or writes anything large, so
a size that cannot fit is refused with the size it needs instead of crashing half-way."""
from __future__ import annotations

import os
import shutil
from pathlib import Path


# Peak memory of a dense float64 eigendecomposition, in units of one M x M matrix
# (input copy, eigenvectors, LAPACK divide-and-conquer workspace): measured 4.9 for
# numpy.linalg.eigh at M = 16384 (9.7 GiB resident).
DENSE_EIGH_MATRICES = 5
# Rows of a kernel tile (kernel job and matrix-free solver): a tile is TILE_ROWS x M, reused.
TILE_ROWS = 2048


class InsufficientResources(RuntimeError):
    pass


def solve_memory(M: int, d: int, operator: str, n_teachers: int, max_steps: int, n: int | None = None) -> int:
    """Peak bytes (estimate, float64) of a curve or validation job solving an ``M``-wide student in
    dimension ``d`` through ``operator`` (:data:`rfw2s.operators.OPERATORS`; ``n``: the inputs a
    sample operator trains on, the rows of the dual one) for ``n_teachers`` with a Lanczos budget of
    ``max_steps``."""
    features = 8 * M * d
    if operator == "dual":  # n rows: their kernel, its eigenvectors and workspace, a block of features
        return 5 * 8 * n**2 + (64 << 20) + features
    if operator == "svd":  # the sample's features, its thin SVD (U, V^T, workspace), H stored
        r = min(n, M)
        return 8 * n * M * 3 + 8 * r * (n + M) + 8 * M**2 + features
    if operator in ("krylov", "krylov-tiled"):  # the sample's features, the basis and H on it
        population = "stored" if operator == "krylov" else "tiled"
        # (an upper bound where the CPU forms the sample's kernel: its panels and one block of
        # Phi's rows, not Phi)
        return 8 * n * M + 8 * M**2 + 2 * 8 * max_steps * M * n_teachers + solve_memory(M, d, population, 0, 0)
    if operator == "eigh":  # the cached eigenvectors, read whole
        return 8 * M**2 + 8 * M * (n_teachers + 2) + features
    krylov = 8 * max_steps * M * (n_teachers + 1)  # the Lanczos basis
    if operator in ("cached", "stored"):
        return 8 * M**2 + krylov + features
    return 8 * min(M, TILE_ROWS) * M * 4 + krylov + features  # a tile and its temporaries


def recipe_memory(recipe, n: int | None = None) -> int:
    """Peak bytes of the curve or validation job of ``recipe`` (:class:`rfw2s.recipes.SolveRecipe`),
    or as if its student were trained on ``n`` inputs."""
    steps = recipe.lanczos["max_steps"] if recipe.lanczos else 0
    trained = recipe.rows if recipe.operator == "dual" else recipe.n
    need = solve_memory(recipe.m_st, recipe.d, recipe.operator, len(recipe.m_te), steps, trained if n is None else n)
    if recipe.rows is not None and recipe.split is None:  # a dataset's infinite-width student: its rows' limit kernel
        from .models.empirical import INFINITE_WIDTH_MAX_ROWS

        need += 3 * 8 * recipe.rows**2 if recipe.rows <= INFINITE_WIDTH_MAX_ROWS else 0
    return need


def kernel_memory(M: int, d: int, layout: str) -> int:
    """Peak bytes of a kernel job building the ``M x M`` kernel in ``layout`` (``whole``: in
    memory at once; ``tiles``: one tile of rows at a time, written as it is built)."""
    if layout == "whole":
        return 8 * M**2 + 8 * M * d
    return solve_memory(M, d, "tiled", 0, 0)


def eigh_memory(M: int) -> int:
    """Peak bytes of the dense eigendecomposition of an ``M x M`` matrix."""
    return DENSE_EIGH_MATRICES * 8 * M**2


def runtime_minutes(kind: str, M: int, operator: str | None = None, n: int | None = None) -> int:
    """A generous time limit in minutes for a job of ``kind`` on an ``M``-wide student (CPU
    scaling: dense eigh ~ M^3, measured 9 min at 16384 on 2 cores; the other steps ~ M^2), trained
    on ``n`` inputs where given."""
    scale = (M / 16384) ** 3 * 30 if kind == "eigh" else (M / 16384) ** 2 * 20
    if n is not None:  # a pass over the sample's features per step, or their SVD
        scale += (n * M / 16384**2) * (60 if operator == "svd" else 20)
    return int(15 + scale)


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}"
        n /= 1024


def available_memory(backend_name: str) -> int:
    """Free memory now: the GPU's on ``cupy``, else the host's (MemAvailable)."""
    if backend_name == "cupy":
        import cupy

        return int(cupy.cuda.Device().mem_info[0])
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def ensure_memory(needed: int, backend_name: str, what: str) -> None:
    free = available_memory(backend_name)
    if needed > free:
        where = "GPU" if backend_name == "cupy" else "host"
        raise InsufficientResources(f"{what} needs about {format_bytes(needed)} of {where} memory; only "
                                    f"{format_bytes(free)} is free")


def ensure_disk(path, needed: int, what: str) -> None:
    folder = Path(path).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise InsufficientResources(f"{what} needs {format_bytes(needed)} of disk in {folder}; only "
                                    f"{format_bytes(free)} is free")
