"""Model 2.2 closed forms against Monte Carlo estimates and exact special values."""
import numpy as np
import pytest

from rfw2s.models import make_model, relu_sphere
from rfw2s.backend import as_backend, to_numpy
from rfw2s import curves
from rfw2s.curves import gram_matrix, gram_tiles
from rfw2s.models.relu import kernel as relu_kernel
from rfw2s.models.relu.kernel import kappa, kappa_into
from rfw2s.seeding import seed_sequence


def _mc_mean_and_se(samples):
    return samples.mean(axis=0), samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])


@pytest.mark.parametrize("d", [3, 8])
def test_gram_moments_and_norm_match_monte_carlo(d, rng):
    beta = rng.standard_normal(d)
    beta /= np.linalg.norm(beta)
    model = relu_sphere(d, beta)
    A = model.sample_features(seed_sequence(1, "teacher", 5, 0), 5)
    X = model.sample_inputs(rng, 400_000)
    phi = model.features(X, A)
    y = model.target(X)

    G_mc, G_se = _mc_mean_and_se(phi[:, :, None] * phi[:, None, :])
    m_mc, m_se = _mc_mean_and_se(phi * y[:, None])
    F_mc, F_se = _mc_mean_and_se(y**2)
    assert np.all(np.abs(model.gram(A, A) - G_mc) < 5 * G_se)
    assert np.all(np.abs(model.target_moments(A) - m_mc) < 5 * m_se)
    assert abs(model.target_norm2 - F_mc) < 5 * F_se


def test_kappa_special_values():
    d = 32
    assert kappa(np.array(1.0), d) == pytest.approx(1 / (2 * d), rel=1e-15)
    assert kappa(np.array(-1.0), d) == pytest.approx(0.0, abs=1e-17)
    # rho = 0 (orthogonal features): theta = pi/2, so kappa = 1/(2 pi d).
    assert kappa(np.array(0.0), d) == pytest.approx(1 / (2 * np.pi * d), rel=1e-15)
    # Round-off outside [-1, 1] is clipped, never NaN.
    assert np.isfinite(kappa(np.array([1 + 1e-15, -1 - 1e-15]), d)).all()


def test_fused_kappa_matches_40_digit_values():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    # Both ends (where naive forms cancel), the middle, several cache chunks.
    rho = np.concatenate([np.linspace(-1, -0.999, 3000), np.linspace(-1, 1, 40_001), np.linspace(0.999, 1, 3000)])
    exact = np.array([float((mpmath.sqrt(1 - mpmath.mpf(r) ** 2) + (mpmath.pi - mpmath.acos(r)) * r)
                            / (2 * mpmath.pi * 7)) for r in rho])
    assert np.max(np.abs(kappa(rho, 7) - exact)) < 3 * np.spacing(1 / 14)  # kappa(1) = 1/14: 3 ulps
    inplace = rho.copy()
    assert kappa_into(inplace, 7) is inplace and np.array_equal(inplace, kappa(rho, 7))
    with pytest.raises(ValueError, match="C-contiguous float64"):
        kappa_into(np.ones((4, 4))[:, ::2], 7)


def test_kappa_on_several_threads_is_kappa_on_one(monkeypatch, rng):
    module = relu_kernel
    rho = rng.uniform(-1, 1, 5 * module._CHUNK + 7)  # uneven shares, a short last chunk
    results = {}
    for threads in ("1", "3"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        results[threads] = kappa_into(rho.copy(), 9)
    assert np.array_equal(results["1"], results["3"]) and 3 in module._POOLS


@pytest.mark.parametrize("name, spec", [("relu_sphere", {"d": 6}),
                                        ("linear_spiked", {"d": 9, "k": 2, "eps": 0.1, "target": "first"})])
@pytest.mark.parametrize("layout", ["whole", "tiles"])  # the whole kernel: one product, or row tiles
def test_kernel_tiles_and_the_whole_kernel_reproduce_the_gram_matrix(name, spec, backend, layout):
    # Both fill their tiles in place (gram_into; relu_sphere with one fused kernel on CuPy);
    # the whole kernel of linear_spiked is a symmetric product of its own.
    be = as_backend(backend)
    model = make_model(name, **spec)
    W = model.sample_features(seed_sequence(0, "student", 37, 0), 37)
    reference = model.gram(W, W)
    # Copies: each tile is overwritten by the next.
    tiles = {start: np.array(to_numpy(tile)) for start, tile in gram_tiles(model, be.asarray(W), tile_rows=8)}
    assert sorted(tiles) == [0, 8, 16, 24, 32] and tiles[32].shape == (5, 37)
    assert np.allclose(np.concatenate([tiles[s] for s in sorted(tiles)]), reference, rtol=1e-14, atol=0)
    whole = to_numpy(gram_matrix(model, be.asarray(W), layout))
    # Another rounding (S S^T): to round-off of the kernel's scale; exactly symmetric where
    # the whole product is syrk (NumPy; cuBLAS's gemm promises no order of summation).
    assert np.allclose(whole, reference, rtol=0, atol=1e-14 * np.abs(reference).max())
    assert np.array_equal(whole, whole.T) or backend == "cupy" or layout == "tiles"


def test_gram_is_symmetric_positive_semidefinite_with_exact_diagonal():
    model = relu_sphere(16)
    W = model.sample_features(seed_sequence(0, "student", 300, 0), 300)
    G = model.gram(W, W)
    assert np.allclose(G, G.T, rtol=0, atol=1e-18)
    assert np.allclose(np.diag(G), 1 / (2 * 16), rtol=1e-14)
    assert np.linalg.eigvalsh(G).min() > -1e-15


def test_default_beta_is_first_basis_vector_and_draws_are_unit_rows():
    model = relu_sphere(5)
    assert np.array_equal(model.beta, np.eye(5)[0])
    assert model.target_norm2 == pytest.approx(1 / 5)
    U = model.sample_features(seed_sequence(3, "teacher", 7, 2), 7)
    assert U.shape == (7, 5)
    assert np.allclose(np.linalg.norm(U, axis=1), 1.0)


@pytest.mark.parametrize("kwargs, match", [
    ({"d": 1}, "d must be an integer >= 2"),
    ({"d": 2.5}, "d must be an integer >= 2"),
    ({"d": 4, "beta": [1.0, 0.0]}, "beta must be"),
    ({"d": 3, "beta": [0.0, 0.0, 0.0]}, "beta must be"),
    ({"d": 3, "beta": [np.nan, 1.0, 0.0]}, "beta must be"),
])
def test_bad_model_parameters_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        relu_sphere(**kwargs)


def test_every_model_module_is_reached_by_its_import_path():
    # No name the package exports hides one of its modules (the constructor relu_sphere is
    # a function; the module of the model is rfw2s.models.relu).
    import importlib
    import pkgutil
    import types

    import rfw2s.models as models

    for info in pkgutil.iter_modules(models.__path__):
        module = importlib.import_module(f"rfw2s.models.{info.name}")
        assert isinstance(module, types.ModuleType) and getattr(models, info.name) is module, info.name
    assert models.relu_sphere(4).d == 4 and models.model_module("relu_sphere") is models.relu


def test_unknown_model_lists_available():
    with pytest.raises(ValueError, match="available: dataset, linear_spiked, relu_sphere"):
        make_model("no_such_model", d=3)


@pytest.mark.parametrize("name, spec", [("relu_sphere", {"d": 6}),
                                        ("linear_spiked", {"d": 9, "k": 2, "eps": 0.1, "target": "first"})])
@pytest.mark.parametrize("lanes", [1, 6])
@pytest.mark.parametrize("fused_inner", [False, True])
def test_matrix_free_product_is_the_kernel_times_the_block(name, spec, backend, lanes, fused_inner, rng, monkeypatch):
    # Tiles of 8 rows (the last one short): relu_sphere's product is one fused pass over each
    # tile on CuPy (kernel function and product), or with fused_inner one launch with the
    # inner products inside too; every other case gram_into and a product.
    monkeypatch.setattr(relu_kernel, "FUSED_INNER_PRODUCTS", fused_inner)
    be = as_backend(backend)
    model = make_model(name, **spec)
    W = model.sample_features(seed_sequence(0, "student", 37, 0), 37)
    X = rng.standard_normal((37, lanes))
    product = to_numpy(curves.tiled_matvec(model, be.asarray(W), 37, tile_rows=8)(be.asarray(X)))
    reference = model.gram(W, W) @ X / 37
    scale = np.abs(model.gram(W, W)) @ np.abs(X) / 37
    assert np.max(np.abs(product - reference) / scale) < 1e-14


@pytest.mark.parametrize("name, spec", [("relu_sphere", {"d": 6}),
                                        ("linear_spiked", {"d": 9, "k": 2, "eps": 0.1, "target": "first"})])
def test_features_into_a_buffer_are_the_features(name, spec, backend, rng):
    be = as_backend(backend)
    model = make_model(name, **spec)
    A = be.asarray(model.sample_features(seed_sequence(0, "student", 11, 0), 11))
    X = be.asarray(model.sample_inputs(rng, 7))
    out = be.xp.full((7, 11), np.nan)
    assert model.features_into(X, A, out) is out
    assert np.array_equal(to_numpy(out), to_numpy(model.features(X, A)))
