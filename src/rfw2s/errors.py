"""Errors the solvers raise."""


class SolverError(RuntimeError):
    """A linear-algebra step failed, or gave non-finite numbers; the message names the size and backend."""
