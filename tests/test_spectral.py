"""Spectral identities of the ReLU kernel on the sphere and its closed-form coefficients."""
import mpmath
import numpy as np
import pytest

from rfw2s.models import relu_sphere
from rfw2s.models.relu.kernel import kappa
from rfw2s.models.relu.spectrum import (gegenbauer, harmonic_dimension, kappa_series, relu_coefficients,
                                        relu_eigenvalues)


def _c_k_reference(d, k, dps=40):
    """E[relu(s) P_k(s)] by high-precision quadrature, with the Gegenbauer polynomial
    C_k^lam (lam = (d - 2) / 2) from its explicit finite sum, normalised at 1."""
    mpmath.mp.dps = dps
    nu = mpmath.mpf(d - 3) / 2
    lam = mpmath.mpf(d - 2) / 2

    def C(s):
        return mpmath.fsum((-1) ** j * mpmath.rf(lam, k - j) / (mpmath.factorial(j) * mpmath.factorial(k - 2 * j))
                           * (2 * s) ** (k - 2 * j) for j in range(k // 2 + 1))

    weight = lambda s: (1 - s * s) ** nu  # noqa: E731
    P = lambda s: C(s) / C(mpmath.mpf(1))  # noqa: E731
    Z = mpmath.quad(weight, [-1, 1])
    return mpmath.quad(lambda s: s * P(s) * weight(s), [0, 1]) / Z


@pytest.mark.parametrize("d", [3, 4, 8, 32])
def test_relu_coefficients_match_high_precision_quadrature(d):
    c = relu_coefficients(d, 12)
    for k in (0, 1, 2, 4, 6, 8, 10, 12):
        ref = float(_c_k_reference(d, k))
        assert c[k] == pytest.approx(ref, rel=1e-10, abs=0), (d, k)


def test_first_eigenvalues_for_d32():
    d = 32
    lam = relu_eigenvalues(d, 9)
    assert lam[1] == pytest.approx(1 / (4 * d * d), rel=1e-14)
    assert lam[0] == pytest.approx(5.05e-3, rel=2e-3)
    assert lam[2] == pytest.approx(4.64e-6, rel=2e-3)
    assert lam[4] == pytest.approx(3.79e-9, rel=2e-3)
    assert np.all(lam[3::2] == 0)


@pytest.mark.parametrize("d", [3, 8, 32])
def test_eigenvalues_times_multiplicities_sum_to_kappa_at_one(d):
    K = 4000
    weights = relu_eigenvalues(d, K) * np.array([harmonic_dimension(d, k) for k in range(K + 1)], float)
    partial = np.cumsum(weights)
    assert np.all(np.diff(partial) >= 0)
    assert partial[-1] <= 1 / (2 * d) * (1 + 1e-14)
    assert partial[-1] == pytest.approx(1 / (2 * d), rel=1e-8)


def test_harmonic_dimensions():
    assert [harmonic_dimension(3, k) for k in range(5)] == [1, 3, 5, 7, 9]
    assert harmonic_dimension(32, 1) == 32
    assert harmonic_dimension(32, 2) == 32 * 33 // 2 - 1


def test_gegenbauer_normalisation_and_orthogonality():
    d = 7  # weight (1 - s^2)^2 is a polynomial: Gauss-Legendre is exact
    P = gegenbauer(5, d, np.array([1.0]))
    assert np.allclose(P[:, 0], 1.0)
    # Orthogonality under the sphere's marginal; ||P_k||^2 = 1 / N(d, k).
    s, w = np.polynomial.legendre.leggauss(200)
    w = w * (1 - s * s) ** ((d - 3) / 2)
    w /= w.sum()
    P = gegenbauer(5, d, s)
    gram = (P * w) @ P.T
    expected = np.diag([1 / harmonic_dimension(d, k) for k in range(6)])
    assert np.allclose(gram, expected, atol=1e-12)


@pytest.mark.parametrize("d", [5, 32])
def test_funk_hecke_series_reproduces_kappa_away_from_the_poles(d):
    rho = np.linspace(-0.95, 0.95, 41)
    assert np.allclose(kappa_series(rho, d, 400), kappa(rho, d), rtol=1e-8, atol=0)
    assert relu_sphere(d).gram(np.eye(d)[:1], np.eye(d)[:1])[0, 0] == pytest.approx(1 / (2 * d))
