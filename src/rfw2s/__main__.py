"""``python -m rfw2s <step> ... [--blas-threads N|all]``: the entry points the workflow calls.

The thread option (anywhere on the line) is applied before NumPy is imported: Snakemake pins
BLAS to the job's ``threads`` (1 under ``--cores 1``) through environment variables, which a
BLAS library only reads at load time. The dense steps run one at a time (they hold the ``gpu``
resource), so they may use every core.
"""
import sys
import time

# When the interpreter reached this module: a job logs its start-up (imports) from here.
STARTED = time.perf_counter()

OPTION = "--blas-threads"


def without_blas_threads(argv: list[str]) -> tuple[list[str], str | None]:
    """``argv`` without the thread option (``--blas-threads N`` or ``--blas-threads=N``, the last
    one given wins), and its value."""
    rest, value, i = [], None, 0
    while i < len(argv):
        if argv[i] == OPTION:
            if i + 1 == len(argv):
                raise SystemExit(f"python -m rfw2s: {OPTION} needs a value (a thread count or 'all')")
            value, i = argv[i + 1], i + 2
        elif argv[i].startswith(OPTION + "="):
            value, i = argv[i].split("=", 1)[1], i + 1
        else:
            rest.append(argv[i])
            i += 1
    return rest, value


if __name__ == "__main__":
    import os

    from rfw2s.machine import set_blas_threads

    args, threads = without_blas_threads(sys.argv[1:])
    if threads is not None:
        try:
            set_blas_threads(threads)
        except ValueError as exc:
            raise SystemExit(f"python -m rfw2s: {exc}") from None
    from rfw2s.cli import main
    from rfw2s.models import PLUGINS_VARIABLE, load_plugins

    load_plugins(p for p in os.environ.get(PLUGINS_VARIABLE, "").split(os.pathsep) if p)

    sys.exit(main(args))
