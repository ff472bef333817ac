"""The student in function space on a dataset's rows (the *dual* route): exact, and cheap when
the rows are fewer than the student's features.

On ``n`` training rows with features ``Phi`` (``n x M``), the kernel ``K = Phi Phi^T / (n M)`` has
the nonzero spectrum of ``H = Phi^T Phi / (n M)``. With ``K = U diag(lam) U^T``, a student trained
from zero by a rule with filter ``phi`` on the labels ``f`` (a teacher's values on the rows, or the
truth ``Y``) takes the values ``U diag(e(lam)) U^T f`` on them (``e = lam phi``, the rule's
progress), and on other rows ``x`` the values ``K_x U diag(phi(lam)) U^T f`` with
``K_x = Phi_x Phi^T / (n M)``. Every teacher, the truth, every output and every grid value come
from one ``K`` and one eigendecomposition (:func:`rfw2s.spectral.evaluate`):

* the population variant (trained and measured on all ``N`` rows): ``L = |f - Y|^2 / N``, the
  quadratic form :class:`rfw2s.spectral.SameKernel` with ``c^ = sqrt(lam M / N) U^T f``;
* the split protocol (trained on rows ``B``, measured on rows ``C``): ``L = |f_C - Y_C|^2 / n_C``,
  :class:`rfw2s.spectral.OtherKernel` with ``A = K_CB U``, ``H^ = A^T A / n_C``.

Forming ``K`` costs ``n^2 M`` multiply-adds (the features in blocks of columns: never ``n x M``
at once), its eigendecomposition ``n^3``.
"""
from __future__ import annotations

import numpy as np

from .backend import array_namespace, as_backend
from .dense import spectrum_of_gram
from .spectral import Curves, OtherKernel, SameKernel, evaluate

SOLVER = "dual"
# Bytes of one block of feature columns while the kernel is formed (the rows' and a test
# split's features of that block).
BLOCK_BYTES = 64 << 20


def row_kernels(model, W, train, test=None):
    """``K = Phi_B Phi_B^T / (n_B M)`` of the training rows ``train`` (indices into ``model.rows``,
    or None: every row) and, for ``test`` rows, ``K_CB = Phi_C Phi_B^T / (n_B M)``, the features
    of ``W`` formed a block of columns at a time."""
    xp = array_namespace(W)
    rows = model.rows_on(xp)
    B = rows if train is None else rows[xp.asarray(train)]
    C = None if test is None else rows[xp.asarray(test)]
    n, M = B.shape[0], W.shape[0]
    width = max(1, BLOCK_BYTES // (8 * (n + (0 if C is None else C.shape[0]))))
    K, scratch = xp.zeros((n, n)), xp.empty((n, n))
    KC = None if C is None else xp.zeros((C.shape[0], n))
    buffers = {}  # by block width: fresh memory costs more than the product on a CPU
    for start in range(0, M, width):
        block = W[start:start + width]
        if block.shape[0] not in buffers:
            buffers[block.shape[0]] = xp.empty((n, block.shape[0]))
        phi = model.features_into(B, block, buffers[block.shape[0]])
        xp.matmul(phi, phi.T, out=scratch)  # one buffer, transposed: a symmetric product (syrk on the CPU)
        K += scratch
        if C is not None:
            KC += model.features(C, block) @ phi.T
    K /= n * M
    return K, (None if KC is None else KC / (n * M))


def evaluate_on_rows(lam, V, labels_on_rows, Y, rule, M: float, labels=None, test=None):
    """The filter's curves for every column of ``labels_on_rows`` (``n x columns x outputs``; the
    last column the truth's), from the training kernel's spectrum ``(lam, V)`` on ``n`` rows
    (``K = V diag(lam) V^T``, ``K = Phi Phi^T / (n M)``, or any kernel of that form with ``M = 1``):
    measured on the training rows against ``Y``, or on ``test = (K_CB, Y_C)``. Accuracies where
    ``labels`` (of the rows measured on) are given."""
    xp = array_namespace(lam)
    n = V.shape[0]
    a = (V.T @ labels_on_rows.reshape(n, -1)).reshape((V.shape[1],) + labels_on_rows.shape[1:])  # each U^T f
    if test is None:
        scale = xp.sqrt(lam * (M / n))
        y = V.T @ Y
        terms = SameKernel(scale[:, None, None] * a, scale[:, None] * y, float(xp.sum(Y * Y)) / n, M,
                           values=V * xp.sqrt(lam * (n / M)))
    else:
        K_CB, Y_C = test
        A = K_CB @ V  # the student's values on the test rows per unit of phi(lam) U^T f
        n_C = A.shape[0]
        terms = OtherKernel(a, (A.T @ A) / n_C, (A.T @ Y_C) / n_C, float(xp.sum(Y_C * Y_C)) / n_C, 1.0, values=A)
    return evaluate(rule, lam, terms, labels=labels)


def dual_curves(model, W, teachers, rule, *, backend="numpy", train=None, test=None) -> Curves:
    """Exact curves of the student ``W`` on a dataset model's rows (:mod:`rfw2s.models.empirical`)
    for each teacher ``(U, coef)`` and the truth, by ``rule``: trained and measured on every row
    (``train = test = None``), or trained on the rows ``train`` and measured on the rows ``test``
    (the split protocol: the teachers' own loss is then measured there too). Accuracies, the
    teachers' among them, where the target has classes."""
    be = as_backend(backend)
    xp = be.xp
    Wx = be.asarray(W)
    with be.linalg_guard():
        K, K_CB = row_kernels(model, Wx, train, test)
        lam, V = spectrum_of_gram(K, be, divisor=1.0)
    Y = model.targets_on(xp)
    train_Y = Y if train is None else Y[xp.asarray(train)]
    # The labels each student is trained on: each teacher's values on the rows, then the truth's.
    columns = xp.stack([model.values(U, coef, train, xp) for U, coef in teachers] + [train_Y], axis=1)
    teacher_losses = None
    if test is None:
        labels = model.labels
        filtered = evaluate_on_rows(lam, V, columns, train_Y, rule, W.shape[0], labels=labels)
    else:
        labels = None if model.labels is None else model.labels.restricted(test)
        test_Y = Y[xp.asarray(test)]
        filtered = evaluate_on_rows(lam, V, columns, train_Y, rule, W.shape[0], labels=labels, test=(K_CB, test_Y))
        teacher_losses = np.array([float(xp.mean(xp.sum((model.values(U, coef, test, xp) - test_Y) ** 2, axis=1)))
                                   for U, coef in teachers])
    teacher_accuracy = None if labels is None else np.array([model.accuracy(U, coef, test, xp) for U, coef in teachers])
    return Curves.of(filtered, SOLVER, teacher_losses=teacher_losses, teacher_accuracy=teacher_accuracy)


def infinite_width_kernel(rows, d: int):
    """``E_w[relu(<w, x_i>) relu(<w, x_j>)]`` for ``w`` uniform on the sphere ``S^{d-1}``:
    ``|x_i| |x_j| kappa(rho_ij)`` (the ReLU kernel of the cosine), over the number of rows: the
    limit of ``K`` as the student grows."""
    from .models.relu.kernel import kappa

    xp = array_namespace(rows)
    norms = xp.sqrt(xp.sum(rows * rows, axis=1))
    unit = rows / norms[:, None]
    return (norms[:, None] * kappa(unit @ unit.T, d) * norms[None, :]) / rows.shape[0]
