"""Order-independent random draws.

Every draw is keyed by (experiment seed, role, size, replicate) through
``numpy.random.SeedSequence``: a draw never depends on run order, backend, or
which other jobs ran, so adding a teacher size leaves every other draw unchanged.
"""
from __future__ import annotations

import zlib

import numpy as np

ROLES = ("student", "teacher", "inputs", "heldout", "target", "samples", "split")


def seed_sequence(seed: int, role: str, size: int, replicate: int) -> np.random.SeedSequence:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}; got {role!r}")
    for name, value in (("seed", seed), ("size", size), ("replicate", replicate)):
        if int(value) != value or value < 0:
            raise ValueError(f"{name} must be a non-negative integer; got {value!r}")
    # crc32 of the role name is stable across Python runs (unlike hash()).
    return np.random.SeedSequence(int(seed), spawn_key=(zlib.crc32(role.encode()), int(size), int(replicate)))


def generator(seed: int, role: str, size: int, replicate: int) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, role, size, replicate))


def draw(model, seed: int, role: str, size: int, replicate: int) -> np.ndarray:
    """``size`` feature directions of ``model`` for ``role`` (``student`` or ``teacher``) and
    ``replicate``: every job that needs a draw makes it here, from its key (a draw costs less
    than a job's start-up, so none is written)."""
    return model.sample_features(seed_sequence(seed, role, size, replicate), size)
