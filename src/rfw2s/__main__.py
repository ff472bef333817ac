"""``python -m rfw2s [--blas-threads N|all] <step> ...``: the entry points the workflow calls.

The thread option is read before NumPy is imported: Snakemake pins BLAS to the job's
``threads`` (1 under ``--cores 1``) through environment variables, which a BLAS library
only reads at load time. The dense steps run one at a time (they hold the ``gpu``
resource), so they may use every core.
"""
import os
import sys
import time

# When the interpreter reached this module: a job logs its start-up (imports) from here.
STARTED = time.perf_counter()

BLAS_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                  "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def _usable_cores() -> int:
    # The affinity mask, not the machine's core count: a cluster job sees only its own.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _set_blas_threads(argv):
    if len(argv) >= 2 and argv[0] == "--blas-threads":
        value = argv[1]
        n = _usable_cores() if value == "all" else int(value)
        for var in BLAS_VARIABLES:
            os.environ[var] = str(n)
        return argv[2:]
    return argv


if __name__ == "__main__":
    args = _set_blas_threads(sys.argv[1:])
    from rfw2s.cli import main
    from rfw2s.models import PLUGINS_VARIABLE, load_plugins

    load_plugins(p for p in os.environ.get(PLUGINS_VARIABLE, "").split(os.pathsep) if p)

    sys.exit(main(args))
