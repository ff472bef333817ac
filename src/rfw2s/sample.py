"""Sampled-data training: what a reader would do by hand.

Draw inputs from the model's distribution, label them with the teacher, and train the
student's top layer by plain gradient descent on fresh batches (step ``eta`` well under
``2 / lam_max``, so time ``t = eta * steps``). The student's loss against ``f*`` is
measured on held-out inputs. Independent runs (fresh inputs, same features) give the
standard error, which covers both the gradient noise and the held-out estimate.

Parametrisation as everywhere: ``f = M^{-1/2} Phi theta``, loss ``1/2 E[(f - y)^2]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .backend import as_backend, to_numpy
from .seeding import generator, seed_sequence
from .dense import symmetric_eigh

# Bump when a change alters the validation rule's tables (it reruns). 4: the convergence
# table had extra, non-best rows (rfw2s.validation.convergence_table).
SAMPLED_VERSION = "4"

# Fraction of the stability limit 2 / lam_max used when no step is given: gradient descent
# runs ahead of gradient flow by about (eta lam)^2 / 2 per step on each mode, so the step is
# kept small enough that this bias stays under the Monte Carlo error.
DEFAULT_STEP_FRACTION = 0.05


@dataclass(frozen=True)
class SampledCurve:
    ts: np.ndarray  # achieved times eta * steps
    losses: np.ndarray  # mean over runs of the held-out loss against f*
    se: np.ndarray  # standard error over runs
    runs: np.ndarray  # (n_runs, len(ts)) per-run held-out losses
    eta: float
    batch: int


def largest_stable_step(model, W, backend="numpy") -> float:
    """``2 / lam_max(H)``, ``H = gram(W, W) / M``: gradient descent diverges at or above it."""
    be = as_backend(backend)
    Wx = be.asarray(W)
    lam, _ = symmetric_eigh(model.gram(Wx, Wx) / W.shape[0], be)
    return 2.0 / float(lam.max())


# Held-out inputs per chunk: the squared error of a ReLU network is heavy-tailed, so the
# held-out set must be large (an 8192-point set scattered by +-3% at M_ST = 1024).
EVAL_CHUNK = 8192


def feature_maker(model, rows: int, directions, be, stack: tuple = ()):
    """``X -> features(X, directions)`` for up to ``rows`` inputs (``X``: ``rows x d``, or
    ``stack + (rows, d)``, one matrix per run), into one reused buffer when the model has
    ``features_into`` (each result is overwritten by the next)."""
    into = getattr(model, "features_into", None)
    if into is None:
        return lambda X: model.features(X, directions)
    buffer = be.xp.empty((*stack, rows, directions.shape[0]))
    return lambda X: into(X, directions, buffer[..., :X.shape[-2], :])


def heldout_loss(model, Wx, theta, scale, n_eval, seed_sequence, be) -> np.ndarray:
    """Mean over ``n_eval`` held-out inputs of ``(f_theta - f*)^2``, one value per column of
    ``theta``; the inputs come from ``seed_sequence`` in chunks (memory EVAL_CHUNK x M)."""
    rng = np.random.default_rng(seed_sequence)
    features = feature_maker(model, min(EVAL_CHUNK, n_eval), Wx, be)
    total = np.zeros(theta.shape[1])
    for start in range(0, n_eval, EVAL_CHUNK):
        X = be.asarray(model.sample_inputs(rng, min(EVAL_CHUNK, n_eval - start)))
        error = features(X) @ (scale * theta) - model.target(X)[:, None]
        total += to_numpy(be.xp.sum(error * error, axis=0))
    return total / n_eval


# Inputs are drawn for many steps at once (about 8 MB): one host-to-device copy, not one
# per step, and no wait for the device in between. Rows are drawn in stream order, so the
# batches are those of one draw per step.
INPUT_CHUNK_ELEMENTS = 1 << 20


def _input_batches(model, rngs, batch: int, chunk_steps: int, be):
    """``runs x batch x d`` inputs per step, run ``r``'s from ``rngs[r]`` (consecutive
    batches of its stream), drawn ``chunk_steps`` steps at a time."""
    while True:
        chunk = be.asarray(np.stack([model.sample_inputs(rng, batch * chunk_steps) for rng in rngs]))
        for start in range(0, batch * chunk_steps, batch):
            yield chunk[:, start:start + batch]


def train_students(model, W, teachers, ts, *, eta: float | None = None, batch: int = 2048,
                   n_eval: int = 131072, runs: int = 4, seed: int = 0, backend="numpy") -> list[SampledCurve]:
    """Gradient descent on fresh batches labelled by each teacher ``(U, coef)``; held-out
    loss against ``f*`` at each ``t``.

    All teachers train in lockstep on the same batches, and one matrix product per step
    gives the features of the student and of every teacher. ``ts`` are rounded to whole
    steps (the achieved times are returned). A step at or above the stability limit is
    refused with the largest stable step in the message.
    """
    be = as_backend(backend)
    xp = be.xp
    M = W.shape[0]
    limit = largest_stable_step(model, W, be)
    if eta is None:
        eta = DEFAULT_STEP_FRACTION * limit
    if not 0 < eta < limit:
        raise ValueError(f"step eta = {eta:.4g} is unstable for this student: gradient descent needs "
                         f"0 < eta < 2 / lam_max = {limit:.4g} (use, e.g., eta = {DEFAULT_STEP_FRACTION * limit:.4g})")
    if runs < 2:
        raise ValueError(f"runs must be >= 2 to estimate a standard error; got {runs}")
    steps = np.unique(np.maximum(np.rint(np.asarray(ts, float) / eta).astype(np.int64), 0))
    n = len(teachers)
    Wx = be.asarray(W)
    # Student and teacher directions stacked: the teachers' labels are the features of
    # their rows times a block-diagonal matrix of their coefficients.
    directions = xp.concatenate([Wx] + [be.asarray(U) for U, _ in teachers])
    label_coef = np.zeros((directions.shape[0] - M, n))
    offset = 0
    for i, (U, coef) in enumerate(teachers):
        label_coef[offset:offset + len(coef), i] = to_numpy(coef)
        offset += len(coef)
    label_coef = be.asarray(label_coef)
    scale = 1.0 / np.sqrt(M)
    # The runs advance in lockstep, each on its own input stream: one (batched) product
    # serves all of them, so a GPU launches about as much for 8 runs as for one.
    batch_features = feature_maker(model, batch, directions, be, stack=(runs,))
    chunk_steps = max(1, INPUT_CHUNK_ELEMENTS // (runs * batch * W.shape[1]))
    batches = _input_batches(model, [generator(seed, "inputs", M, run) for run in range(runs)], batch,
                             chunk_steps, be)
    theta = xp.zeros((runs, M, n))
    snapshots = []
    done = 0
    for target in steps:
        for _ in range(int(target) - done):
            features = batch_features(next(batches))
            Phi = features[..., :M]  # unscaled; f = scale * Phi @ theta
            residual = Phi @ theta
            residual *= scale
            residual -= features[..., M:] @ label_coef
            theta -= (eta * scale / batch) * (Phi.transpose(0, 2, 1) @ residual)
        done = int(target)
        snapshots.append(theta.copy())
    per_run = np.empty((n, runs, steps.size))
    for run in range(runs):
        # Held-out inputs from their own stream, one pass for every time of the run.
        losses = heldout_loss(model, Wx, xp.concatenate([snap[run] for snap in snapshots], axis=1), scale,
                              n_eval, seed_sequence(seed, "heldout", M, run), be)
        per_run[:, run, :] = losses.reshape(steps.size, n).T
    if not np.all(np.isfinite(per_run)):
        raise FloatingPointError(f"sampled training diverged (eta = {eta:.4g}, limit {limit:.4g})")
    return [SampledCurve(ts=steps * eta, losses=r.mean(axis=0), se=r.std(axis=0, ddof=1) / np.sqrt(runs),
                         runs=r, eta=float(eta), batch=int(batch)) for r in per_run]


def train_student(model, W, U, coef, ts, **options) -> SampledCurve:
    """:func:`train_students` for one teacher."""
    return train_students(model, W, [(U, coef)], ts, **options)[0]
