"""Targets beyond the linear one and Gaussian inputs for ReLU features: the Funk-Hecke facts
they rest on, every closed form against Monte Carlo, the infinite-width solution against its
limits and against the finite width, and identities between the set-ups."""
import math

import numpy as np
import pytest

from rfw2s.models import build_spec, make_model, relu_sphere
from rfw2s.models.relu.spectrum import gegenbauer, harmonic_dimension, relu_coefficients
from rfw2s.seeding import seed_sequence
from rfw2s.solve import fit_teacher, student_losses
from rfw2s.spectral import GradientFlow, student_losses_infinite

D = 8


def _net(d=D, width=5, seed=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((width, d)) * rng.uniform(0.5, 2.0, (width, 1)), rng.standard_normal(width)


def _models(d=D):
    V, b = _net(d)
    harmonics = {"kind": "harmonics", "coefficients": {0: 0.2, 1: 0.8, 2: 0.5, 3: 0.33}}
    network = {"kind": "relu_network", "directions": V, "weights": b, "center": True, "normalize": True}
    return {f"{name}-{inputs}": relu_sphere(d, target=target, inputs=inputs)
            for name, target in (("linear", None), ("harmonics", harmonics), ("network", network))
            for inputs in ("sphere", "gaussian")}


MODELS = _models()


def _mc(samples):
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])


def test_funk_hecke_facts_hold_by_monte_carlo(rng):
    model = relu_sphere(D)
    X = model.sample_inputs(rng, 400_000)
    a, b = model.sample_features(seed_sequence(0, "teacher", 2, 0), 2)
    c = relu_coefficients(D, 4)
    assert c[0] == pytest.approx(0.1455, abs=5e-5)  # Gamma(d/2) / (2 sqrt(pi) Gamma((d+1)/2)) at d = 8
    relu_a = np.maximum(X @ a, 0.0)
    P_a, P_b = gegenbauer(4, D, X @ a), gegenbauer(4, D, X @ b)
    P_ab = gegenbauer(4, D, np.array(a @ b))
    for k in range(5):
        mean, se = _mc(relu_a * P_b[k])
        assert abs(mean - c[k] * P_ab[k]) < 5 * se + 1e-12, k
        for j in range(5):
            mean, se = _mc(P_a[j] * P_b[k])
            expected = P_ab[k] / harmonic_dimension(D, k) if j == k else 0.0
            assert abs(mean - expected) <= 5 * se + 1e-12, (j, k)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_closed_form_matches_monte_carlo(name, rng):
    model = MODELS[name]
    A = model.sample_features(seed_sequence(1, "teacher", 4, 0), 4)
    X = model.sample_inputs(rng, 400_000)
    phi, y = model.features(X, A), model.target(X)
    for exact, samples in ((model.gram(A, A), phi[:, :, None] * phi[:, None, :]),
                           (model.target_moments(A), phi * y[:, None]), (model.target_norm2, y**2)):
        mean, se = _mc(samples)
        assert np.all(np.abs(exact - mean) < 5 * se), name
    if name.startswith("network"):  # centred and normalised in the population
        mean, se = _mc(y)
        assert abs(mean) < 5 * se and model.target_norm2 == pytest.approx(1.0, rel=1e-12)


def test_the_public_constructor_takes_explicit_networks_and_the_config_draws_them():
    V, b = _net(width=7)
    scaled = relu_sphere(D, target={"kind": "relu_network", "directions": 3.0 * V, "weights": b / 3.0})
    plain = relu_sphere(D, target={"kind": "relu_network", "directions": V, "weights": b})
    A = plain.sample_features(seed_sequence(0, "student", 6, 0), 6)
    # relu(<3 v, x>) b / 3 is relu(<v, x>) b: the norms of the directions are the weights'.
    assert np.allclose(scaled.target_moments(A), plain.target_moments(A), rtol=1e-13)
    drawn = build_spec({"name": "relu_sphere", "d": D, "inputs": "gaussian",
                        "target": {"kind": "relu_network", "width": 7, "seed": 4, "center": True, "normalize": True}})
    again = make_model("relu_sphere", d=D, inputs="gaussian",
                       target={"kind": "relu_network", "width": 7, "seed": 4, "center": True, "normalize": True})
    assert np.array_equal(drawn.profile.beta, again.profile.beta) and drawn.target_norm2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="relu_network target has its own directions"):
        relu_sphere(D, beta=np.ones(D), target={"kind": "relu_network", "directions": V, "weights": b})
    with pytest.raises(ValueError, match="directions must be"):
        relu_sphere(D, target={"kind": "relu_network", "directions": V[:, :3], "weights": b})


def test_the_linear_target_is_the_harmonic_target_of_degree_one():
    linear = relu_sphere(D)
    harmonic = relu_sphere(D, target={"kind": "harmonics", "coefficients": {1: 1 / math.sqrt(D)}})
    U = linear.sample_features(seed_sequence(0, "teacher", 12, 0), 12)
    fit = fit_teacher(linear, U)
    assert np.allclose(harmonic.target_moments(U), linear.target_moments(U), rtol=1e-13)
    assert harmonic.target_norm2 == pytest.approx(linear.target_norm2, rel=1e-14)
    ts = GradientFlow(np.geomspace(1.0, 1e6, 20))
    np.testing.assert_allclose(harmonic.infinite_width(U, fit.coef, ts).losses,
                               linear.infinite_width(U, fit.coef, ts).losses, rtol=1e-12)


@pytest.mark.parametrize("name", ["harmonics-sphere", "network-sphere", "network-gaussian", "harmonics-gaussian"])
def test_infinite_width_starts_at_F_ends_at_the_teacher_and_bounds_its_truncation(name):
    model = MODELS[name]
    U = model.sample_features(seed_sequence(2, "teacher", 16, 0), 16)
    fit = fit_teacher(model, U)
    curve = model.infinite_width(U, fit.coef, GradientFlow([0.0, 1e2, 1e4, 1e30]))
    assert curve.losses[0] == pytest.approx(model.target_norm2, rel=1e-12)
    assert curve.losses[-1] == pytest.approx(fit.loss, rel=1e-8)  # the student becomes the teacher
    assert np.all(curve.error_bound <= 1e-10 * curve.losses)
    assert np.all(curve.losses >= model.loss_floor * (1 - 1e-12))
    # The parts of the breakdown sum to the whole, for the student and for the teacher.
    from rfw2s.analysis import degree_table

    table = degree_table(0, {"coef": fit.coef, "loss": fit.loss}, GradientFlow([0.0, 1e2, 1e4, 1e30]), curve,
                         [1, 2, 3], remainder=model.radial_remainder)
    sums = table.groupby("t")["L_ST_inf"].sum().to_numpy()
    np.testing.assert_allclose(sums, curve.losses, rtol=1e-10)
    teacher = table.groupby("degree")["L_TE"].first().sum()
    assert teacher == pytest.approx(fit.loss, rel=1e-8)


@pytest.mark.parametrize("name", ["harmonics-sphere", "network-gaussian"])
def test_finite_width_approaches_infinite_width_for_every_target(name):
    model = MODELS[name]
    U = model.sample_features(seed_sequence(2, "teacher", 8, 0), 8)
    fit = fit_teacher(model, U)
    ts = np.geomspace(1.0, 1e5, 30)
    L_inf = student_losses_infinite(model, U, fit.coef, ts)
    gaps = [np.max(np.abs(student_losses(model, model.sample_features(seed_sequence(2, "student", m, 0), m), U,
                                         fit.coef, ts) / L_inf - 1)) for m in (64, 256, 1024)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.05, gaps


def test_gaussian_inputs_are_the_sphere_with_the_time_and_loss_scaled_by_d():
    # A target without a constant: every moment is d times the sphere's, so the loss at time
    # t is d times the sphere's at time d t, at finite width and at infinite width.
    V, b = _net()
    target = {"kind": "relu_network", "directions": V, "weights": b}
    sphere, gaussian = relu_sphere(D, target=target), relu_sphere(D, target=target, inputs="gaussian")
    W = sphere.sample_features(seed_sequence(0, "student", 200, 0), 200)
    U = sphere.sample_features(seed_sequence(0, "teacher", 10, 0), 10)
    fit_s, fit_g = fit_teacher(sphere, U), fit_teacher(gaussian, U)
    assert np.allclose(fit_g.coef, fit_s.coef, rtol=1e-9) and fit_g.loss == pytest.approx(D * fit_s.loss, rel=1e-10)
    ts = np.geomspace(0.1, 1e4, 15)
    np.testing.assert_allclose(student_losses(gaussian, W, U, fit_g.coef, ts),
                               D * student_losses(sphere, W, U, fit_s.coef, D * ts), rtol=1e-9)
    np.testing.assert_allclose(student_losses_infinite(gaussian, U, fit_g.coef, ts),
                               D * student_losses_infinite(sphere, U, fit_s.coef, D * ts), rtol=1e-9)


def test_a_centred_target_on_gaussian_inputs_leaves_its_radial_remainder():
    V, b = _net()
    model = relu_sphere(D, target={"kind": "relu_network", "directions": V, "weights": b, "center": True},
                        inputs="gaussian")
    b0 = model.profile.constant
    r_mean = math.sqrt(2) * math.gamma((D + 1) / 2) / math.gamma(D / 2)
    assert model.radial_remainder == pytest.approx(b0**2 * (1 - r_mean**2 / D), rel=1e-12) and b0 < 0
    # Wider teachers approach it from above and never pass it; nor does any student.
    gaps = []
    for m_te in (25, 100, 400):
        U = model.sample_features(seed_sequence(5, "teacher", m_te, 0), m_te)
        fit = fit_teacher(model, U)
        gaps.append(fit.loss - model.radial_remainder)
        curve = model.infinite_width(U, fit.coef, GradientFlow(np.geomspace(1e-2, 1e6, 20)))
        assert np.all(curve.losses >= model.radial_remainder)
    assert 0 < gaps[2] < gaps[1] < gaps[0]


def test_energy_in_degrees_relu_features_cannot_see_is_a_floor():
    model = relu_sphere(16, target={"kind": "harmonics", "coefficients": {1: 0.6, 3: 0.8}})
    assert model.loss_floor == pytest.approx(0.64) and model.target_norm2 == pytest.approx(1.0)
    W = model.sample_features(seed_sequence(0, "student", 400, 0), 400)
    U = model.sample_features(seed_sequence(0, "teacher", 50, 0), 50)
    fit = fit_teacher(model, U)
    ts = np.geomspace(1.0, 1e8, 20)
    assert fit.loss >= 0.64 and np.all(student_losses(model, W, U, fit.coef, ts) >= 0.64)
    curve = model.infinite_width(U, fit.coef, GradientFlow(ts))
    np.testing.assert_allclose(curve.per_degree[3], 0.64, rtol=1e-12)  # the student never moves there


def test_the_peer_linear_model_has_unit_energy_and_its_student_width_rule():
    from rfw2s.config import student_widths
    from rfw2s.models import specialize

    for m_te in (4, 16, 64):
        spec = specialize("linear_spiked", {"target": "peer"}, m_te)
        model = build_spec(spec)
        assert model.target_norm2 == pytest.approx(1.0, rel=1e-12)
        spike, tail = model.beta[0], model.beta[-1]
        assert spike / tail == pytest.approx(m_te**0.75, rel=1e-12) and np.all(model.beta[: spec["k"]] == spike)
        assert student_widths({"m_st": {"d_power": 1.25}}, spec) == [round(spec["d"] ** 1.25)]
