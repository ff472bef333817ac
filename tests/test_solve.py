"""Teacher fit and exact finite-width student: the identities of gradient flow from zero,
and agreement with independent computations (direct integration, explicit projection)."""
import numpy as np
import pytest

from rfw2s.models import relu_sphere
from rfw2s.seeding import seed_sequence
from rfw2s.solve import fit_teacher, losses_from_spectrum, student_losses, student_spectrum
from rfw2s.spectral import GradientFlow

MODEL = relu_sphere(6)


def _draw(role, M, replicate=0, model=MODEL):
    return model.sample_features(seed_sequence(7, role, M, replicate), M)


def test_teacher_loss_is_nonnegative_and_nonincreasing_as_features_are_added(backend):
    U = _draw("teacher", 120)
    losses = [fit_teacher(MODEL, U[:k], backend=backend).loss for k in (1, 2, 5, 10, 20, 40, 80, 120)]
    assert all(L >= 0 for L in losses)
    assert all(b <= a * (1 + 1e-12) for a, b in zip(losses, losses[1:]))
    assert losses[0] < MODEL.target_norm2  # one feature already explains part of f*


def test_teacher_fit_is_the_population_least_squares_solution():
    U = _draw("teacher", 15)
    fit = fit_teacher(MODEL, U)
    G, m, F = MODEL.gram(U, U), MODEL.target_moments(U), MODEL.target_norm2
    assert np.allclose(G @ fit.coef, m, rtol=1e-9, atol=1e-14)  # normal equations
    assert fit.loss == pytest.approx(F - 2 * m @ fit.coef + fit.coef @ G @ fit.coef, rel=1e-10)


def test_rank_deficient_teacher_gram_gives_the_same_function_without_nans():
    U = _draw("teacher", 10)
    duplicated = np.vstack([U, U[:4], U[:4]])  # G_TE exactly singular
    fit, fit_dup = fit_teacher(MODEL, U), fit_teacher(MODEL, duplicated)
    assert np.all(np.isfinite(fit_dup.coef))
    assert fit_dup.rank == 10
    assert fit_dup.loss == pytest.approx(fit.loss, rel=1e-10)
    # Same teacher function: identical moments against any probe features.
    probe = _draw("student", 30)
    assert np.allclose(MODEL.gram(probe, duplicated) @ fit_dup.coef, MODEL.gram(probe, U) @ fit.coef,
                       rtol=1e-9, atol=1e-15)


def test_student_loss_starts_at_target_norm(backend):
    W, U = _draw("student", 200), _draw("teacher", 8)
    fit = fit_teacher(MODEL, U)
    L = student_losses(MODEL, W, U, fit.coef, [0.0], backend=backend)
    assert L[0] == pytest.approx(MODEL.target_norm2, rel=1e-14)


def test_student_equal_to_teacher_converges_to_teacher_loss(backend):
    U = _draw("teacher", 40)
    fit = fit_teacher(MODEL, U)
    L = student_losses(MODEL, U, U, fit.coef, [np.inf, 1e13], backend=backend)
    assert L == pytest.approx([fit.loss, fit.loss], rel=1e-8)


def test_infinite_time_student_is_the_projection_of_the_teacher_onto_the_student_span():
    W, U = _draw("student", 150), _draw("teacher", 12)
    fit = fit_teacher(MODEL, U)
    # Independent: least-squares projection of f_TE on span(phi(.; w_j)), loss against f*.
    G_W = MODEL.gram(W, W)
    a = np.linalg.lstsq(G_W, MODEL.gram(W, U) @ fit.coef, rcond=1e-13)[0]
    m_W = MODEL.target_moments(W)
    projected = MODEL.target_norm2 - 2 * a @ m_W + a @ G_W @ a
    L_inf = student_losses(MODEL, W, U, fit.coef, [np.inf])[0]
    assert L_inf == pytest.approx(projected, rel=1e-6)


def test_closed_form_matches_direct_integration_of_gradient_flow():
    """RK4 on d theta/dt = -H theta + c / sqrt(M), theta(0) = 0, loss measured directly."""
    W, U = _draw("student", 60), _draw("teacher", 6)
    fit = fit_teacher(MODEL, U)
    M = W.shape[0]
    H = MODEL.gram(W, W) / M
    c = MODEL.gram(W, U) @ fit.coef
    m = MODEL.target_moments(W)
    lam_max = np.linalg.eigvalsh(H).max()
    ts = np.array([0.3, 3.0, 30.0, 300.0]) / lam_max
    h = 0.05 / lam_max

    def rhs(theta):
        return -H @ theta + c / np.sqrt(M)

    theta, t, measured = np.zeros(M), 0.0, []
    for target in ts:
        while t < target - 1e-12 * target:
            step = min(h, target - t)
            k1 = rhs(theta)
            k2 = rhs(theta + step / 2 * k1)
            k3 = rhs(theta + step / 2 * k2)
            k4 = rhs(theta + step * k3)
            theta, t = theta + step / 6 * (k1 + 2 * k2 + 2 * k3 + k4), t + step
        measured.append(MODEL.target_norm2 - 2 * theta @ m / np.sqrt(M) + theta @ H @ theta)
    assert student_losses(MODEL, W, U, fit.coef, ts) == pytest.approx(measured, rel=1e-9)


def test_all_teachers_of_a_draw_in_one_pass_equal_one_at_a_time():
    W = _draw("student", 100)
    lam, V = student_spectrum(MODEL, W)
    ts = np.geomspace(1, 1e6, 17)
    fits = [(U, fit_teacher(MODEL, U)) for U in (_draw("teacher", 4), _draw("teacher", 9))]
    C = np.stack([MODEL.gram(W, U) @ f.coef for U, f in fits], axis=1)
    m, F = MODEL.target_moments(W), MODEL.target_norm2
    batched = losses_from_spectrum(lam, V, C, m, F, GradientFlow(ts))
    for j in range(len(fits)):
        assert np.allclose(batched[j], losses_from_spectrum(lam, V, C[:, j], m, F, GradientFlow(ts)), rtol=1e-14)


def test_gradient_flow_filter_limits():
    lam = np.array([0.0, 1e-3, 1.0])
    flow = GradientFlow([0.0, 10.0, np.inf])
    g = flow(lam)
    assert np.all(g[0] == 0)
    assert g[1, 0] == 10.0 and g[1, 2] == pytest.approx(1 - np.exp(-10))
    assert g[2].tolist() == [0.0, pytest.approx(1e3), 1.0]
    # Progress is lam * phi(lam): nothing learnt at t = 0 or on a zero mode, all at t = inf.
    e = flow.progress(lam)
    assert e[0].tolist() == [0.0, 0.0, 0.0] and e[2].tolist() == [0.0, 1.0, 1.0]
    assert np.allclose(e[1], lam * g[1], rtol=1e-15)
    assert np.all(flow.progress_bound(lam) >= e)
    with pytest.raises(ValueError, match="non-negative"):
        GradientFlow([-1.0])


def test_numpy_and_cupy_agree(cupy_backend):
    model = relu_sphere(32)
    W, U = _draw("student", 2048, model=model), _draw("teacher", 32, model=model)
    ts = np.geomspace(1e2, 1e8, 50)
    fits = {b: fit_teacher(model, U, backend=b) for b in ("numpy", cupy_backend)}
    assert fits["cupy"].loss == pytest.approx(fits["numpy"].loss, rel=1e-10)
    curves = {b: student_losses(model, W, U, fits[b].coef, ts, backend=b) for b in ("numpy", cupy_backend)}
    assert isinstance(curves["cupy"], np.ndarray)
    assert np.allclose(curves["cupy"], curves["numpy"], rtol=1e-9)
