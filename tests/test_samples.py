"""Finite samples and other learning rules: every filter against the training it describes,
the dense and Krylov routes against each other, the limits in n and mu, and the public API."""
import numpy as np
import pytest

from rfw2s.backend import as_backend, to_numpy
from rfw2s.curves import exact_curves
from rfw2s.finite_sample import draw_samples, sample_curves, sample_kernel_matvec
from rfw2s.models import relu_sphere
from rfw2s.seeding import draw
from rfw2s.solve import fit_teacher, student_losses
from rfw2s.spectral import GradientDescent, GradientFlow, Ridge, RuleSet

MODEL = relu_sphere(8)


def _problem(M=120, m_te=10, n=300, seed=0):
    W = draw(MODEL, seed, "student", M, 0)
    U = draw(MODEL, seed, "teacher", m_te, 0)
    return W, U, fit_teacher(MODEL, U), draw_samples(MODEL, seed, n, 0)


def _population_loss(theta, W):
    M = W.shape[0]
    return MODEL.target_norm2 - 2 / np.sqrt(M) * theta @ MODEL.target_moments(W) + theta @ MODEL.gram(W, W) @ theta / M


def test_literal_full_batch_gradient_descent_on_the_sample_is_the_filter():
    W, U, fit, X = _problem()
    M, n = W.shape[0], X.shape[0]
    Phi, y = MODEL.features(X, W), MODEL.features(X, U) @ fit.coef
    lam_max = np.linalg.eigvalsh(Phi.T @ Phi / (n * M)).max()
    eta = 0.9 / lam_max
    steps = [0, 1, 2, 5, 30, 200, 1000]
    theta, literal = np.zeros(M), []
    for k in range(max(steps) + 1):
        if k in steps:
            literal.append(_population_loss(theta, W))
        residual = Phi @ theta / np.sqrt(M) - y  # f = M^-1/2 Phi theta; loss 1/2 mean (f - y)^2
        theta = theta - eta * Phi.T @ residual / (n * np.sqrt(M))
    exact = student_losses(MODEL, W, U, fit.coef, steps, rule="gradient_descent", step=eta, samples=X)
    np.testing.assert_allclose(exact, literal, rtol=1e-9, atol=0)


def test_literal_gradient_descent_on_the_population_is_the_filter():
    W, U, fit, _ = _problem()
    M = W.shape[0]
    H, c = MODEL.gram(W, W) / M, MODEL.gram(W, U) @ fit.coef
    eta = 1.5 / np.linalg.eigvalsh(H).max()  # above 1 / lam_max: the top modes oscillate, still stable
    theta, literal, steps = np.zeros(M), [], [0, 1, 3, 40, 500]
    for k in range(max(steps) + 1):
        if k in steps:
            literal.append(_population_loss(theta, W))
        theta = theta - eta * (H @ theta - c / np.sqrt(M))
    exact = student_losses(MODEL, W, U, fit.coef, steps, rule="gradient_descent", step=eta)
    np.testing.assert_allclose(exact, literal, rtol=1e-9, atol=0)


def test_an_unstable_step_is_refused_with_the_largest_stable_one():
    W, U, fit, X = _problem()
    lam_max = np.linalg.eigvalsh(MODEL.gram(W, W) / W.shape[0]).max()
    with pytest.raises(ValueError, match=rf"2 / lam_max = {2 / lam_max:.6g}"):
        student_losses(MODEL, W, U, fit.coef, [10], rule="gradient_descent", step=2.0 / lam_max)
    with pytest.raises(ValueError, match="gradient descent needs 0 < eta < 2 / lam_max"):
        student_losses(MODEL, W, U, fit.coef, [10], rule="gradient_descent", step=10.0 / lam_max, samples=X)
    with pytest.raises(ValueError, match="a step is a gradient-descent parameter"):
        student_losses(MODEL, W, U, fit.coef, [10.0], rule="ridge", step=1.0)


@pytest.mark.parametrize("rule", [GradientFlow(np.geomspace(1, 1e7, 25)),
                                  GradientDescent([0, 1, 10, 1000, 100000], eta_times_lam_max=1.0),
                                  Ridge(np.geomspace(1e-8, 1e-1, 20))])
@pytest.mark.parametrize("form_kernel", [True, False])
def test_the_krylov_route_agrees_with_the_dense_route_on_either_population_kernel(rule, backend, form_kernel,
                                                                                  monkeypatch):
    from rfw2s import finite_sample

    # The sample's kernel formed once (the CPU at small widths), or a pass over Phi a step.
    monkeypatch.setattr(finite_sample, "FORM_KERNEL_MAX_M", 10**6 if form_kernel else 0)
    monkeypatch.setattr(finite_sample, "FORM_BLOCK_BYTES", 8 * 200 * 64)  # 64 rows a block, a short last
    W, U, fit, X = _problem(M=200, n=500)
    U2 = draw(MODEL, 1, "teacher", 30, 0)
    teachers = [(U, fit.coef), (U2, fit_teacher(MODEL, U2).coef)]
    dense = sample_curves(MODEL, W, teachers, rule, X, operator="svd", backend=backend)
    for operator in ("krylov", "krylov-tiled"):
        fast = sample_curves(MODEL, W, teachers, rule, X, operator=operator, backend=backend)
        assert fast.converged and fast.achieved_tol <= 1e-10 and fast.solver.startswith("sample-lanczos")
        np.testing.assert_allclose(fast.losses, dense.losses, rtol=1e-9, atol=0)


@pytest.mark.parametrize("block_rows", [1, 64, 10**6])
@pytest.mark.parametrize("with_buffer", [True, False])
def test_the_sample_kernel_formed_by_row_blocks_is_phi_t_phi(block_rows, with_buffer, monkeypatch):
    """Over 2 panels (M = 600 > one panel's 512 rows), with blocks of one row, 64 rows (a short
    last) or the whole sample, into the reused buffer or from a model without one."""
    from rfw2s import finite_sample

    M, n = 600, 300
    monkeypatch.setattr(finite_sample, "FORM_BLOCK_BYTES", 8 * M * block_rows)
    W, _, _, X = _problem(M=M, n=n)
    Y = np.random.default_rng(3).standard_normal((n, 2))

    class WithoutBuffer:
        features = MODEL.features

    K, start = finite_sample.formed_sample_kernel(MODEL if with_buffer else WithoutBuffer(), X, W, Y)
    Phi = MODEL.features(X, W)
    G = Phi.T @ Phi / (n * M)
    assert len(K.panels) == 2
    for (r0, r1), panel in zip(zip(K.edges[:-1], K.edges[1:]), K.panels):
        np.testing.assert_allclose(panel, G[r0:r1, r0:], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(start, Phi.T @ Y / (n * np.sqrt(M)), rtol=1e-12, atol=1e-15)


def test_the_one_pass_sample_kernel_product_is_the_two_products(rng, monkeypatch):
    from rfw2s import curves, finite_sample

    monkeypatch.setattr(curves, "_POOLS", {})  # this test's pools (up to 143 threads) go with it

    Phi = rng.standard_normal((1000, 37))
    X = rng.standard_normal((37, 3))
    np.testing.assert_allclose(sample_kernel_matvec(Phi)(X), Phi.T @ (Phi @ X), rtol=1e-12)
    assert np.array_equal(sample_kernel_matvec(Phi[:0])(X), np.zeros((37, 3)))  # no rows: K = 0
    monkeypatch.setattr(finite_sample, "PASS_BLOCK_BYTES", 8 * 37 * 7)  # 7 rows a block: a short last one
    for cores in (1, 2, 3, 1000):  # the blocks shared among the cores, or more cores than blocks
        monkeypatch.setattr(finite_sample, "usable_cores", lambda: cores)
        product = sample_kernel_matvec(Phi)
        assert product.owns_cores == (cores > 1)
        np.testing.assert_allclose(product(X), Phi.T @ (Phi @ X), rtol=1e-12)


def test_as_the_sample_grows_the_student_approaches_the_population_one():
    W, U, fit, _ = _problem(M=100)
    rule = GradientFlow(np.geomspace(10, 1e6, 15))
    population = exact_curves(MODEL, W, [(U, fit.coef)], rule, operator="eigh").losses[0]
    gaps = [np.max(np.abs(sample_curves(MODEL, W, [(U, fit.coef)], rule, draw_samples(MODEL, 3, n, 0),
                                        operator="svd").losses[0] / population - 1)) for n in (200, 3200, 51200)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.02, gaps


def test_ridge_goes_from_the_interpolant_to_the_zero_predictor():
    W, U, fit, X = _problem(M=100, n=60)  # fewer inputs than features: the labels are interpolated
    tiny, huge = 1e-13, 1e9
    ridge = student_losses(MODEL, W, U, fit.coef, [tiny, huge], rule="ridge", samples=X)
    interpolant = student_losses(MODEL, W, U, fit.coef, [np.inf], samples=X)[0]  # gradient flow to the end
    assert ridge[0] == pytest.approx(interpolant, rel=1e-6)
    assert ridge[1] == pytest.approx(MODEL.target_norm2, rel=1e-6)
    # The minimum-norm interpolant, directly: theta = pinv(Phi) y sqrt(M), f = M^-1/2 Phi theta = y.
    Phi, y = MODEL.features(X, W), MODEL.features(X, U) @ fit.coef
    theta = np.linalg.pinv(Phi) @ y * np.sqrt(W.shape[0])
    assert _population_loss(theta, W) == pytest.approx(interpolant, rel=1e-6)


def test_several_rules_solved_at_once_equal_each_alone():
    W, U, fit, X = _problem()
    rules = [GradientFlow(np.geomspace(1, 1e6, 10)), GradientDescent([1, 10, 100], eta_times_lam_max=1.0),
             Ridge(np.geomspace(1e-6, 1e-2, 5))]
    together = RuleSet(rules)
    for solve in (lambda r: exact_curves(MODEL, W, [(U, fit.coef)], r, operator="stored"),
                  lambda r: sample_curves(MODEL, W, [(U, fit.coef)], r, X, operator="krylov")):
        joint = solve(together)
        for part, rule in zip(together.split(joint.losses), rules):
            np.testing.assert_allclose(part, solve(rule).losses, rtol=1e-9)


def test_a_teacher_fitted_on_its_own_inputs_has_its_population_loss():
    U = draw(MODEL, 0, "teacher", 12, 0)
    population = fit_teacher(MODEL, U)
    for n, ridge in ((20, 0.0), (20, 1e-3), (6, 0.0)):  # six inputs for twelve features: min-norm
        X = draw_samples(MODEL, 5, n, 0)
        fit = fit_teacher(MODEL, U, samples=X, ridge=ridge)
        G, m = MODEL.gram(U, U), MODEL.target_moments(U)
        assert fit.loss == pytest.approx(MODEL.target_norm2 - 2 * m @ fit.coef + fit.coef @ G @ fit.coef, rel=1e-12)
        assert fit.loss >= population.loss  # the population fit is the best of the span
        assert np.all(np.isfinite(fit.coef))
    big = fit_teacher(MODEL, U, samples=draw_samples(MODEL, 5, 200_000, 0))
    assert big.loss == pytest.approx(population.loss, rel=1e-2)
    ridged = fit_teacher(MODEL, U, ridge=1e6)  # population ridge: a huge penalty learns nothing
    assert ridged.loss == pytest.approx(MODEL.target_norm2, rel=1e-4)


def test_every_rule_on_cupy_gives_the_numpy_curves(cupy_backend):
    W, U, fit, X = _problem()
    rules = RuleSet([GradientFlow(np.geomspace(1, 1e6, 8)), GradientDescent([0, 3, 30, 300], eta_times_lam_max=1.0),
                     Ridge(np.geomspace(1e-6, 1e-1, 6))])
    solves = [(operator, lambda be, op=operator: sample_curves(MODEL, W, [(U, fit.coef)], rules, X, operator=op,
                                                                backend=be))
              for operator in ("svd", "krylov", "krylov-tiled")]
    solves += [(operator, lambda be, op=operator: exact_curves(MODEL, W, [(U, fit.coef)], rules, operator=op,
                                                               backend=be))
               for operator in ("eigh", "stored", "tiled")]  # the population
    for operator, solve in solves:
        ours, theirs = solve(cupy_backend), solve("numpy")
        np.testing.assert_allclose(ours.losses, theirs.losses, rtol=1e-10, err_msg=operator)
        ours_eta, theirs_eta = (curves.rule.rules[1].eta for curves in (ours, theirs))  # resolved on lam_max
        assert ours_eta == pytest.approx(theirs_eta, rel=1e-12)


def test_the_filters_limits():
    lam = np.array([0.0, 1e-9, 1e-3, 0.3])
    gd = GradientDescent([0, 1, 10**6], eta=1.0)
    assert np.all(gd(lam)[0] == 0) and np.allclose(gd(lam)[1], 1.0)  # one step of size 1: phi = eta
    assert gd(lam)[2, 0] == 1e6 and gd(lam)[2, 3] == pytest.approx(1 / 0.3)  # k eta at 0, 1/lam once converged
    ridge = Ridge([1e-12, 1e12])
    assert ridge(lam)[0, 3] == pytest.approx(1 / 0.3) and np.all(ridge.progress(lam)[1] < 1e-12)
    for rule in (gd, ridge, GradientFlow([0.0, 5.0, 1e9])):
        assert np.all(rule.progress_bound(lam[:3]) >= rule.progress(lam[:3]) - 1e-15)
    assert np.all(np.isnan(ridge.times)) and np.array_equal(gd.times, gd.grid)
    with pytest.raises(ValueError, match="bind\\(\\) it"):
        GradientDescent([1], eta_times_lam_max=1.0).times
    with pytest.raises(ValueError, match="non-negative integers"):
        GradientDescent([1.5], eta=1.0)
    be = as_backend("numpy")
    assert np.array_equal(to_numpy(gd(be.asarray(lam))), gd(lam))


def _expm(A):
    """exp(A) by scaling and squaring a Taylor series: independent of any eigendecomposition."""
    s = max(0, int(np.ceil(np.log2(max(np.abs(A).sum(axis=1).max(), 1e-300)))) + 1)
    B = A / 2.0**s
    E, term = np.eye(len(A)), np.eye(len(A))
    for k in range(1, 30):
        term = term @ B / k
        E = E + term
    for _ in range(s):
        E = E @ E
    return E


def _direct_theta(rule, grid, K, b, eta=None):
    """theta = phi(K) b for each grid value, each filter from its own definition: gradient flow
    as int_0^t exp(-s K) b ds (the top-right block of exp(t [[-K, b], [0, 0]]), Van Loan), ridge
    by an explicit solve, gradient descent as the explicit sum of powers of (I - eta K)."""
    M = len(K)
    if rule == "gradient_flow":
        block = np.zeros((M + 1, M + 1))
        block[:M, :M], block[:M, M] = -K, b
        return [_expm(t * block)[:M, M] for t in grid]
    if rule == "ridge":
        return [np.linalg.solve(K + mu * np.eye(M), b) for mu in grid]
    step = np.eye(M) - eta * K
    return [eta * sum(np.linalg.matrix_power(step, j) for j in range(k)) @ b if k else np.zeros(M) for k in grid]


@pytest.mark.parametrize("on_samples", [False, True])
@pytest.mark.parametrize("rule, grid", [("gradient_flow", [0.0, 3.0, 40.0, 500.0, 5e6]),  # t lam_max to 1e5
                                        ("gradient_descent", [0, 1, 7, 60]),
                                        ("ridge", [1e-4, 1e-2, 1.0])])
def test_each_filter_is_its_direct_evaluation(rule, grid, on_samples):
    W, U, fit, X = _problem(M=30, n=80)
    M, n = W.shape[0], X.shape[0]
    if on_samples:
        Phi, y = MODEL.features(X, W), MODEL.features(X, U) @ fit.coef
        K, b = Phi.T @ Phi / (n * M), Phi.T @ y / (n * np.sqrt(M))
    else:
        K, b = MODEL.gram(W, W) / M, MODEL.gram(W, U) @ fit.coef / np.sqrt(M)
    eta = 0.7 / np.linalg.norm(K, 2) if rule == "gradient_descent" else None
    direct = [_population_loss(theta, W) for theta in _direct_theta(rule, grid, K, b, eta)]
    exact = student_losses(MODEL, W, U, fit.coef, grid, rule=rule, step=eta, samples=X if on_samples else None)
    np.testing.assert_allclose(exact, direct, rtol=1e-9, atol=0)


def test_gradient_descent_with_a_shrinking_step_approaches_gradient_flow():
    W, U, fit, _ = _problem()
    lam_max = np.linalg.eigvalsh(MODEL.gram(W, W) / W.shape[0]).max()
    times = np.array([10.0, 100.0, 1000.0]) / lam_max
    flow = student_losses(MODEL, W, U, fit.coef, times, rule="gradient_flow")
    gaps = []
    for eta in np.array([0.5, 0.05, 0.005]) / lam_max:
        steps = np.rint(times / eta).astype(int)
        descent = student_losses(MODEL, W, U, fit.coef, steps, rule="gradient_descent", step=eta)
        gaps.append(np.max(np.abs(descent / flow - 1)))
    # First order in the step: each tenfold smaller step, about a tenth of the gap.
    assert gaps[0] > 1e-4 and gaps[1] < gaps[0] / 5 and gaps[2] < gaps[1] / 5, gaps


def test_sample_draws_depend_on_their_key_not_on_the_order_drawn():
    forward = [draw_samples(MODEL, 7, n, r) for n, r in [(50, 0), (50, 1), (80, 0)]]
    backward = [draw_samples(MODEL, 7, n, r) for n, r in [(80, 0), (50, 1), (50, 0)]][::-1]
    for a, b in zip(forward, backward):
        assert np.array_equal(a, b)
    assert not np.allclose(forward[0], forward[1])  # another replicate, other inputs
    assert not np.allclose(forward[0], forward[2][:50])  # another n, another draw
    assert not np.allclose(forward[0], draw_samples(MODEL, 8, 50, 0))  # another seed
