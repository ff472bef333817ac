"""The student trained on ``n`` teacher-labelled inputs (full batch, no label noise) by a
learning rule, with its *population* loss, exact given the sample.

With ``Phi[i, j] = phi(x_i; w_j)`` for the sample ``x_1 .. x_n`` and labels ``y_i = f_TE(x_i)``,
the sample's kernel is ``K = Phi^T Phi / (n M)`` and ``b = Phi^T y / (n sqrt(M))``; a rule (a
spectral filter, :mod:`rfw2s.spectral`) ends at ``theta = phi(K) b``, whose population loss is
``L = F - (2 / sqrt(M)) theta . m + theta^T H theta`` (``H = G / M``, ``m`` and ``F`` of the
population: :class:`rfw2s.spectral.OtherKernel` in ``K``'s eigenbasis). The
population training is the limit ``n -> inf`` (``K -> H``, ``b -> c / sqrt(M)``).

Two routes, through a sample operator of :data:`rfw2s.operators.OPERATORS`:

* ``svd`` (the dense reference): one thin SVD ``Phi / sqrt(n M) = U S V^T`` (so ``K = V S^2 V^T``)
  serves every grid value; ``H`` is needed once in that basis (``M^2 r`` flops, ``r <= min(n, M)``);
* ``krylov`` / ``krylov-tiled``: block Lanczos on ``K`` started from ``b`` (every teacher's),
  each step one pass over ``Phi`` (``K`` never formed; on the CPU up to FORM_KERNEL_MAX_M
  features and for ``n >= M`` ``K`` is formed once instead, from blocks of ``Phi``'s rows,
  ``Phi`` never whole), ``theta ~ Q_k^T S phi(Theta) S^T E_1 R`` for every grid value at once;
  the loss needs ``Q_k H Q_k^T`` (``H`` stored, or by tiles) and ``Q_k m``, and steps are added until the curves change by less than the tolerance.
"""
from __future__ import annotations

import numpy as np

from . import operators
from .backend import array_namespace, as_backend, to_host
from .curves import UpperPanels, dense_matvec, stored_kernel, summed_on_cores, tiled_matvec
from .errors import SolverError
from .krylov import LANCZOS_DEFAULTS, BlockLanczos, ceiling_floor, run_to_tolerance
from .machine import usable_cores
from .seeding import generator
from .spectral import Curves, OtherKernel, evaluate, relative_cutoff

# Up to this width, and for a sample at least as long (n >= M), the CPU's Krylov route forms
# the sample kernel once (its upper panels, about n M^2 flops) and multiplies by it at every
# step (4 M^2 bytes); otherwise each step passes over Phi (8 n M bytes). Measured on the
# 2-core CPU machine, whole curves, formed against passes: at n = 8192, 3.6-4.6 vs 5.0 s at
# M = 4096, 7.3-8.0 vs 8.6-8.9 s at 6144, 11.9-12.3 vs 10.6-10.8 s at 8192; at M = 4096,
# 4.1-4.2 vs 4.1-4.4 s at n = 4096 and 3.9-4.7 vs 3.3-3.4 s at n = 2048.
FORM_KERNEL_MAX_M = 6144
# Bytes of Phi's rows per pass block on the CPU: both products of a block while it is in cache.
PASS_BLOCK_BYTES = 1 << 20
# Bytes of Phi's rows per block when the CPU forms the sample kernel: Phi is never whole (its
# fresh pages, with those of K and its copy, cost 2-3 s at 8192 x 4096 on the CPU machine;
# blocks of 1024 or 2048 rows formed it in 1.8-2.0 s from a cold process against 3.8-4.9 s).
FORM_BLOCK_BYTES = 32 << 20


def draw_samples(model, seed: int, n: int, replicate: int) -> np.ndarray:
    """``n`` inputs from the model's input law for ``replicate``, keyed by (seed, ``samples``,
    ``n``, replicate): a teacher and a student given the same seed and ``n`` see the same inputs."""
    return model.sample_inputs(generator(seed, "samples", n, replicate), n)


def sample_kernel_matvec(Phi):
    """``X -> Phi^T (Phi X)`` (``K @ X`` for ``Phi`` already scaled by ``1 / sqrt(n M)``), on the
    CPU in one pass over row blocks of ``Phi`` (each block used for both products while it is
    in cache), the blocks shared among the cores (curves.summed_on_cores: 20-35% faster than
    BLAS's own threads on each narrow block, 8192 x 16384 on the 2-core CPU machine); on a GPU
    two matrix products."""
    xp = array_namespace(Phi)
    if xp.__name__ != "numpy":
        return lambda X: Phi.T @ (Phi @ X)
    rows = max(1, PASS_BLOCK_BYTES // (8 * Phi.shape[1]))
    starts = list(range(0, Phi.shape[0], rows))
    workers = max(1, min(usable_cores(), len(starts)))  # (no rows: one empty share, K = 0)
    shares = [starts[k::workers] for k in range(workers)]

    def share_product(share, X):
        Y = np.zeros((Phi.shape[1], X.shape[1]))
        for start in share:
            block = Phi[start:start + rows]
            Y += block.T @ (block @ X)
        return Y

    def matvec(X):
        return summed_on_cores(share_product, shares, X)

    matvec.owns_cores = len(shares) > 1  # see curves.dense_matvec
    return matvec


def formed_sample_kernel(model, X, W, Y):
    """On the CPU, the sample's kernel ``K = Phi^T Phi / (n M)`` as :class:`UpperPanels` and the
    start ``b = Phi^T Y / (n sqrt(M))``, accumulated over blocks of the sample's rows
    (FORM_BLOCK_BYTES), each block's features written into one reused buffer."""
    (n, _), M = X.shape, W.shape[0]
    rows = max(1, min(n, FORM_BLOCK_BYTES // (8 * M)))
    edges = UpperPanels.panel_edges(M)
    pairs = list(zip(edges[:-1], edges[1:]))
    panels = [np.empty((r1 - r0, M - r0)) for r0, r1 in pairs]
    start = np.zeros((M, Y.shape[1]))
    buffer, scratch = np.empty((rows, M)), np.empty(edges[1] * M)
    scale = 1.0 / np.sqrt(n * M)
    for lo in range(0, n, rows):
        hi = min(lo + rows, n)
        if hasattr(model, "features_into"):
            Phi = model.features_into(X[lo:hi], W, buffer[:hi - lo])
        else:
            Phi = model.features(X[lo:hi], W)
        Phi *= scale
        start += Phi.T @ Y[lo:hi]
        for (r0, r1), panel in zip(pairs, panels):
            if lo == 0:
                np.matmul(Phi[:, r0:r1].T, Phi[:, r0:], out=panel)
            else:
                block = scratch[:panel.size].reshape(panel.shape)
                np.matmul(Phi[:, r0:r1].T, Phi[:, r0:], out=block)
                panel += block
    return UpperPanels.of_panels(edges, panels), start / np.sqrt(n)


def _population_matvec(model, Wx, operator: str):
    M = Wx.shape[0]
    return tiled_matvec(model, Wx, M) if operator == "krylov-tiled" else dense_matvec(stored_kernel(model, Wx), M)


def sample_curves(model, W, teachers, rule, X, *, operator: str = "krylov", backend="numpy",
                  lanczos: dict | None = None) -> Curves:
    """Population loss curves of the student ``W`` trained on the inputs ``X`` (``n x d``), by
    ``rule``, labelled by each teacher ``(U, coef)`` and by the truth (the strong ceiling: one more
    column in the block every route solves in lockstep), through ``operator`` (a sample operator
    of :data:`rfw2s.operators.OPERATORS`)."""
    op = operators.operator(operator)
    if op.trains_on != "sample":
        raise ValueError(f"a sample's operator must be one of {operators.operators_for('sample')}; got {operator!r}")
    be = as_backend(backend)
    xp = be.xp
    M, n = W.shape[0], X.shape[0]
    Wx, Xx = be.asarray(W), be.asarray(X)
    Y = xp.stack([model.features(Xx, be.asarray(U)) @ be.asarray(coef) for U, coef in teachers]
                 + [model.target(Xx)], axis=1)
    m = model.target_moments(Wx)
    F = model.target_norm2
    H = _population_matvec(model, Wx, operator)
    forms_kernel = operator != "svd" and xp.__name__ == "numpy" and M <= FORM_KERNEL_MAX_M and n >= M
    if not forms_kernel:
        Phi = model.features(Xx, Wx)
        Phi *= 1.0 / np.sqrt(n * M)  # in place: an n x M copy costs its fresh memory
    with be.linalg_guard():
        if operator == "svd":
            return _svd_curves(Phi, Y, m, F, M, n, H, rule, be)
        settings = {**LANCZOS_DEFAULTS, **(lanczos or {})}
        if forms_kernel:
            K, start = formed_sample_kernel(model, Xx, Wx, Y)
            product = dense_matvec(K, M, divisor=1.0)
        else:
            start = Phi.T @ Y / np.sqrt(n)
            product = sample_kernel_matvec(Phi)
        lanczos_run = BlockLanczos(product, start, settings["max_steps"])
        projected = np.zeros((0, 0))  # Q H Q^T on the basis rows so far

        def check():
            nonlocal projected
            k = lanczos_run.steps * lanczos_run.p
            Q = lanczos_run.basis[:k]
            old = projected.shape[0]
            # H only on the rows added since the last check: their columns of Q H Q^T, whose
            # transpose is their rows (H is symmetric). One transfer with the Ritz pairs.
            theta, S, columns, Qm = lanczos_run.ritz(Q @ H(Q[old:k].T), Q @ m)
            corner = (columns[old:] + columns[old:].T) / 2.0
            projected = np.block([[projected, columns[:old]], [columns[:old].T, corner]])
            b_hat = S[:lanczos_run.p].T @ lanczos_run.R
            return evaluate(rule, theta, OtherKernel(b_hat, S.T @ projected @ S, S.T @ Qm, F, M))

        run = run_to_tolerance(lanczos_run, check, settings["tol"], floor=ceiling_floor(len(teachers), F))
    return Curves.of(run.filtered, op.solver, run.steps, run.achieved_tol, run.converged)


def _svd_curves(Phi, Y, m, F: float, M: int, n: int, H, rule, be) -> Curves:
    xp = be.xp
    try:
        U, s, Vt = xp.linalg.svd(Phi, full_matrices=False)
    except Exception as exc:
        raise SolverError(f"the thin SVD of a {Phi.shape[0]} x {Phi.shape[1]} sample failed on {be.name}: "
                          f"{exc}") from exc
    lam = s * s
    keep = lam > relative_cutoff(lam, max(Phi.shape))
    U, s, Vt, lam = U[:, keep], s[keep], Vt[keep], lam[keep]
    b_hat = s[:, None] * (U.T @ Y) / np.sqrt(n)  # V^T Phi^T y / (n sqrt(M)), Phi already scaled
    H_hat = Vt @ H(Vt.T)
    H_hat = (H_hat + H_hat.T) / 2.0
    lam, b_hat, H_hat, m_hat = to_host(lam, b_hat, H_hat, Vt @ m)
    return Curves.of(evaluate(rule, lam, OtherKernel(b_hat, H_hat, m_hat, F, M)), operators.operator("svd").solver)
