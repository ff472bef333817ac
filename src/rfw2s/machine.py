"""What this machine offers a job: its usable cores and its memory. No NumPy here: ``python -m
rfw2s`` reads the cores before NumPy (and its BLAS) is first imported."""
from __future__ import annotations

import os

# Variables through which a BLAS library (and NumPy's threads) learn their thread count, read
# once, when the library loads. Snakemake sets them to a job's `threads`.
BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS",
                  "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def usable_cores() -> int:
    """Threads this process's own parallel work may use: the job's thread budget (the
    OMP_NUM_THREADS Snakemake gives it) where set, else every core it may run on (the affinity
    mask, not the machine's count: a cluster job sees only its own)."""
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        pass
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def set_blas_threads(value: str) -> int:
    """Set every BLAS thread variable to ``value`` (a count, or ``all``: every core this process
    may run on, whatever budget it was given); returns the count."""
    if value == "all":
        for name in BLAS_VARIABLES:
            os.environ.pop(name, None)
        n = usable_cores()
    else:
        n = int(value) if value.isdigit() else 0
        if n < 1:
            raise ValueError(f"--blas-threads takes a count of at least 1 or 'all'; got {value!r}")
    for name in BLAS_VARIABLES:
        os.environ[name] = str(n)
    return n


def host_memory() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
