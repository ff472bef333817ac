"""Lanczos quadrature against the dense eigendecomposition, and its failure modes."""
import shutil

import numpy as np
import pytest

from conftest import NEEDS_COMPILER
from rfw2s import dense
from rfw2s.backend import as_backend, to_numpy
from rfw2s.curves import exact_curves
from rfw2s.krylov import lanczos_curves
from rfw2s.models import relu_sphere
from rfw2s.seeding import seed_sequence
from rfw2s.solve import SolverError, fit_teacher, symmetric_eigh
from rfw2s.spectral import Filtered
from rfw2s.spectral import GradientFlow

MODEL = relu_sphere(32)
TS = GradientFlow(np.geomspace(1e2, 1e10, 120))


def _problem(M, sizes=(16, 64, 256), model=MODEL):
    W = model.sample_features(seed_sequence(0, "student", M, 0), M)
    teachers = []
    for m in sizes:
        U = model.sample_features(seed_sequence(0, "teacher", m, 0), m)
        teachers.append((U, fit_teacher(model, U).coef))
    return W, teachers


@pytest.mark.parametrize("M", [512, 1024])
def test_lanczos_agrees_with_eigh_to_1e_10(M, backend):
    W, teachers = _problem(M)
    dense = exact_curves(MODEL, W, teachers, TS, operator="eigh", backend=backend)
    cached = exact_curves(MODEL, W, teachers, TS, operator="cached", backend=backend, kernel=MODEL.gram(W, W))
    stored = exact_curves(MODEL, W, teachers, TS, operator="stored", backend=backend)
    free = exact_curves(MODEL, W, teachers, TS, operator="tiled", backend=backend)
    assert cached.converged and cached.achieved_tol <= 1e-10 and cached.solver == "lanczos"
    assert free.solver == "lanczos-matrix-free" and free.steps == cached.steps == stored.steps
    for result in (cached, stored, free):
        assert np.max(np.abs(result.losses / dense.losses - 1)) < 1e-10


def test_the_lanczos_basis_stays_orthonormal_and_tridiagonalises_over_many_steps(backend, rng):
    """A kernel-like spectrum (geometric decay: Ritz values converge early, which is where
    Lanczos without re-orthogonalisation loses orthogonality) and a cluster at its bottom,
    run far past convergence: the basis stays orthonormal to round-off and Q K Q^T is T_k."""
    from rfw2s.krylov import BlockLanczos

    M, p, steps = 300, 3, 90
    be = as_backend(backend)
    basis, _ = np.linalg.qr(rng.standard_normal((M, M)))
    lam = np.concatenate([np.geomspace(1.0, 1e-8, M - 40), 1e-8 * (1 + 1e-3 * rng.random(40))])
    K = (basis * lam) @ basis.T
    Kx = be.asarray(K)
    run = BlockLanczos(lambda X: Kx @ X, be.asarray(rng.standard_normal((M, p))), steps)
    for _ in range(steps):
        run.step()
    Q = to_numpy(run.basis[:steps * p])
    assert np.max(np.abs(Q @ Q.T - np.eye(steps * p))) < 1e-12
    assert np.max(np.abs(Q @ K @ Q.T - run.tridiagonal())) < 1e-12
    # The three-term recurrence leaves only round-off for the whole basis: one pass a step.
    assert run.second_passes == 0


def test_a_block_mostly_in_the_old_basis_gets_a_second_pass_and_stays_orthonormal(backend, rng):
    """A product with a large part along the first basis block (what the recurrence does not
    remove): one projection leaves it at round-off of that part, relative to a small rest, so
    the step projects twice, and the basis stays orthonormal."""
    from rfw2s.krylov import BlockLanczos

    be = as_backend(backend)
    M, p, steps = 200, 2, 20
    K = be.asarray(np.diag(np.geomspace(1.0, 1e-3, M)))
    run = BlockLanczos(lambda X: K @ X + 1e8 * run.basis[:p].T @ be.xp.ones((p, X.shape[1])),
                       be.asarray(rng.standard_normal((M, p))), steps)
    for _ in range(steps):
        run.step()
    assert run.second_passes >= steps - 2  # every step after the first block's own two
    Q = to_numpy(run.basis[:steps * p])
    assert np.max(np.abs(Q @ Q.T - np.eye(steps * p))) < 1e-12


def test_an_exhausted_direction_costs_no_second_pass(backend, rng):
    """A teacher given twice leaves a zero column in every later block: it passes the
    criterion (0 >= 0), so it does not make every step project twice."""
    from rfw2s.krylov import BlockLanczos

    be = as_backend(backend)
    M, steps = 300, 40
    K = be.asarray(np.diag(np.geomspace(1.0, 1e-6, M)))
    start = rng.standard_normal((M, 1))
    run = BlockLanczos(lambda X: K @ X, be.asarray(np.hstack([start, start, rng.standard_normal((M, 1))])), steps)
    for _ in range(steps):
        run.step()
    assert run.second_passes == 0
    Q = to_numpy(run.basis[:steps * 3])
    kept = np.abs(Q).sum(axis=1) > 0
    assert kept.sum() == 2 * steps and np.max(np.abs(Q[kept] @ Q[kept].T - np.eye(2 * steps))) < 1e-12


def test_a_step_budget_too_small_is_reported_not_hidden():
    W, teachers = _problem(512)
    G = MODEL.gram(W, W)
    result = exact_curves(MODEL, W, teachers, TS, operator="cached", kernel=G, lanczos={"tol": 1e-13, "max_steps": 30})
    assert not result.converged and result.achieved_tol > 1e-13 and result.steps == 30
    assert np.all(np.isfinite(result.losses))


def test_breakdown_on_a_low_rank_kernel_is_exact():
    # 40 distinct features repeated: H has rank 40, the Krylov space closes before 200 steps.
    W, teachers = _problem(40, sizes=(4, 8))
    W = np.vstack([W] * 5)
    dense = exact_curves(MODEL, W, teachers, TS, operator="eigh")
    lanczos = exact_curves(MODEL, W, teachers, TS, operator="stored", lanczos={"max_steps": 200})
    assert lanczos.converged
    assert np.max(np.abs(lanczos.losses / dense.losses - 1)) < 1e-10


def test_a_space_spanned_before_the_first_check_is_exact_and_says_so():
    # M = 16 is under min_steps: the step budget (M) ends before any convergence check.
    W, teachers = _problem(16, sizes=(4, 8, 16))
    dense = exact_curves(MODEL, W, teachers, TS, operator="eigh")
    lanczos = exact_curves(MODEL, W, teachers, TS, operator="stored")
    assert lanczos.steps == 16 and lanczos.converged and lanczos.achieved_tol == 0.0
    assert np.max(np.abs(lanczos.losses / dense.losses - 1)) < 1e-10


def test_a_failed_eigendecomposition_raises_with_the_size_and_backend(backend):
    be = as_backend(backend)
    W, _ = _problem(6, sizes=())
    G = MODEL.gram(W, W)
    G[2, 3] = G[3, 2] = np.nan  # LAPACK returns NaN eigenvalues for it, cuSOLVER may raise
    with pytest.raises(SolverError, match=rf"eigh .* 6 x 6 matrix on {backend}"):
        symmetric_eigh(be.asarray(G), be)


def test_numpy_refuses_a_dense_eigh_lapack_cannot_do(monkeypatch):
    monkeypatch.setattr(dense, "NUMPY_EIGH_MAX_N", 4)  # 32766 in truth: too big to allocate here
    with pytest.raises(SolverError, match=r"5 x 5 matrix on numpy: LAPACK eigh fails for n >= 5; use a GPU"):
        symmetric_eigh(np.eye(5), as_backend("numpy"))


def test_a_non_finite_product_stops_lanczos_with_the_size_and_backend(backend):
    be = as_backend(backend)
    W, teachers = _problem(64, sizes=(4,))
    c = be.asarray(np.stack([MODEL.gram(W, U) @ coef for U, coef in teachers], axis=1))
    with pytest.raises(SolverError, match=rf"non-finite coefficients \(A\) at step 1 \(M = 64, backend {backend}\)"):
        lanczos_curves(lambda X: X * np.nan, 64, c, be.asarray(MODEL.target_moments(W)), MODEL.target_norm2,
                       TS)


def test_a_teacher_given_twice_gives_its_curve_twice():
    # The block [c, c, m] has rank 2: the repeated direction is dropped, not divided by ~0.
    W, teachers = _problem(512, sizes=(16, 64))
    G = MODEL.gram(W, W)
    once = exact_curves(MODEL, W, teachers, TS, operator="cached", kernel=G)
    twice = exact_curves(MODEL, W, [teachers[0], teachers[0], teachers[1]], TS, operator="cached", kernel=G)
    assert twice.converged and np.all(np.isfinite(twice.losses))
    np.testing.assert_allclose(twice.losses, once.losses[[0, 0, 1]], rtol=1e-10, atol=0)


def test_lanczos_needs_only_products_with_h():
    W, teachers = _problem(256, sizes=(16,))
    H = MODEL.gram(W, W) / 256
    calls = []

    def matvec(X):
        calls.append(X.shape)
        return H @ X

    c = np.stack([MODEL.gram(W, U) @ coef for U, coef in teachers], axis=1)
    result = lanczos_curves(matvec, 256, c, MODEL.target_moments(W), MODEL.target_norm2, TS)
    assert len(calls) == result.steps and all(shape == (256, 2) for shape in calls)  # the block [c, m]


def test_unknown_operator_or_a_kernel_without_its_operator_is_refused():
    W, teachers = _problem(64, sizes=(4,))
    with pytest.raises(ValueError, match="operator must be one of"):
        exact_curves(MODEL, W, teachers, TS, operator="cholesky")
    with pytest.raises(ValueError, match="with operator 'cached', and only then"):
        exact_curves(MODEL, W, teachers, TS, operator="tiled", kernel=MODEL.gram(W, W))


@pytest.fixture(params=["compiled", "blas"])
def product_route(request, monkeypatch):
    """The CPU's symmetric product by the compiled panel kernel, or by BLAS (where it is not built)."""
    from rfw2s import curves

    if request.param == "blas":
        monkeypatch.setattr(curves, "panel_kernel", lambda: None)
    elif curves.panel_kernel() is None:
        pytest.skip("the compiled panel product is not built here")
    return request.param


def test_the_install_built_the_compiled_panel_product():
    # Optional in the build, so that an install without a C compiler still works: where there
    # is one, a silent fall-back to BLAS would be a slow product nobody asked for.
    import importlib.util
    import platform

    from rfw2s import curves

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here: the install leaves the kernel out")
    assert importlib.util.find_spec("rfw2s._panel_kernel") is not None
    flags = open("/proc/cpuinfo").read().split() if platform.system() == "Linux" else []
    if platform.machine() == "x86_64" and {"avx2", "fma"} <= set(flags):
        assert curves.panel_kernel() is not None


def test_the_panel_library_is_found_for_another_python_and_in_an_installed_copy(tmp_path, monkeypatch):
    import importlib.metadata
    import importlib.machinery

    from rfw2s import curves

    if curves.panel_kernel() is None:
        pytest.skip("the compiled panel product is not built or not usable here")
    built = curves.panel_kernel()._name
    # Plain C loaded by ctypes: a build for another Python version (a conda environment's) serves,
    # after this interpreter's own.
    own = tmp_path / ("_panel_kernel" + importlib.machinery.EXTENSION_SUFFIXES[0])
    other = tmp_path / "_panel_kernel.cpython-310-x86_64-linux-gnu.so"  # sorts before 311
    for copy in (own, other):
        shutil.copy(built, copy)
    found = curves.panel_libraries(here=str(tmp_path))
    assert found.index(str(own)) < found.index(str(other))
    # A non-editable install: the jobs run the source, the library is in the installed copy.
    installed = tmp_path / "site-packages" / "rfw2s"
    installed.mkdir(parents=True)
    shutil.copy(built, installed / other.name)

    class Installed:
        files = [importlib.metadata.PackagePath("rfw2s", other.name)]
        files[0].locate = lambda: installed / other.name

    class Damaged:
        @property
        def files(self):
            raise FileNotFoundError("RECORD")

    monkeypatch.setattr(importlib.metadata, "distributions", lambda name=None: [Damaged(), Installed()])
    assert str(installed / other.name) in curves.panel_libraries(here=str(tmp_path / "nothing"))


def test_a_panel_library_that_does_not_load_or_has_another_abi_is_passed_over(tmp_path, monkeypatch):
    import ctypes.util
    import subprocess

    from rfw2s import curves

    if curves.panel_kernel() is None:
        pytest.skip("the compiled panel product is not built or not usable here")
    built = curves.panel_kernel()._name
    foreign = tmp_path / "_panel_kernel.cpython-311-aarch64-linux-gnu.so"  # another machine's build
    foreign.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(100))
    candidates = [str(foreign), ctypes.util.find_library("m")]  # libm: no panel_abi at all
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:  # an older build: panel_abi() of another number
        (tmp_path / "old.c").write_text(f"int panel_abi(void) {{ return {curves.PANEL_ABI - 1}; }}\n")
        subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp_path / "old.so"), str(tmp_path / "old.c")],
                       check=True)
        candidates.append(str(tmp_path / "old.so"))
    monkeypatch.setattr(curves, "panel_libraries", lambda: candidates + [built])
    curves.panel_kernel.cache_clear()
    try:
        assert curves.panel_kernel()._name == built
        monkeypatch.setattr(curves, "panel_libraries", lambda: candidates)
        curves.panel_kernel.cache_clear()
        assert curves.panel_kernel() is None  # then the product runs on BLAS
    finally:
        curves.panel_kernel.cache_clear()


@pytest.mark.parametrize("chunk", [64, 192, 256, 1024])  # 192 does not divide a panel's 512 rows
@pytest.mark.parametrize("cores", [1, 2])
def test_the_compiled_and_blas_symmetric_products_agree_for_every_block_width(chunk, cores, monkeypatch, rng):
    from rfw2s import curves

    if curves.panel_kernel() is None:
        pytest.skip("the compiled panel product is not built here")
    monkeypatch.setattr(curves, "chunk_columns", lambda rows: chunk)
    monkeypatch.setattr(curves, "usable_cores", lambda: cores)
    M = 1100  # panels of 512, 512 and 76 rows
    A = rng.standard_normal((M, M))
    G = A + A.T
    compiled = curves.dense_matvec(G, M)
    monkeypatch.setattr(curves, "panel_kernel", lambda: None)
    blas = curves.dense_matvec(G, M)
    for p in (1, 2, 7, 8, 9, 16, 17):  # a part, one and more groups of the kernel's 8 columns
        X = rng.standard_normal((M, p))
        exact = G @ X / M
        assert np.allclose(compiled(X), exact, rtol=1e-13, atol=1e-13)
        assert np.allclose(blas(X), exact, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize(("M", "block"), [(100, 37), (103, 13), (3, 2)])
def test_the_symmetric_product_with_partial_strips_above_the_diagonal(M, block, rng, product_route):
    # Panels whose rows are not a multiple of the kernel's 4-row strip, with columns above the
    # diagonal block (the default 512-row panels never have both).
    from rfw2s.curves import UpperPanels, dense_matvec

    A = rng.standard_normal((M, M))
    G = A + A.T
    product = dense_matvec(UpperPanels.of_matrix(G, block), M)
    for p in (1, 9, 17):
        X = rng.standard_normal((M, p))
        assert np.allclose(product(X), G @ X / M, rtol=1e-13, atol=1e-13)


def test_the_panel_kernel_touches_nothing_outside_its_panel_and_blocks(rng):
    # Every panel, X and Y sit inside NaN (read) and sentinel (write) margins: a read outside
    # would put a NaN into Y, a write outside would change a sentinel.
    from rfw2s.curves import UpperPanels, panel_kernel

    kernel = panel_kernel()
    if kernel is None:
        pytest.skip("the compiled panel product is not built here")
    M, block, p = 103, 13, 2 * kernel.panel_group()
    A = rng.standard_normal((M, M))
    G = A + A.T
    X_margins = np.full((M + 8, p), np.nan)
    X = X_margins[4:4 + M]
    X[:] = rng.standard_normal((M, p))
    Y_margins = np.full((M + 8, p), 7.0)
    Y = Y_margins[4:4 + M]
    Y[:] = 0.0
    edges = UpperPanels.panel_edges(M, block)
    for r0, r1 in zip(edges[:-1], edges[1:]):
        margins = np.full((r1 - r0 + 4, M - r0 + 8), np.nan)
        panel = margins[:r1 - r0, 4:4 + M - r0]
        panel[:] = G[r0:r1, r0:]
        kernel.panel_product(panel.ctypes.data, r1 - r0, M - r0, margins.shape[1], r0, X.ctypes.data, Y.ctypes.data,
                             p, 5)
    assert np.allclose(Y, G @ X, rtol=1e-13, atol=1e-12)
    assert np.all(Y_margins[:4] == 7.0) and np.all(Y_margins[4 + M:] == 7.0)


def test_the_symmetric_product_refuses_a_block_or_kernel_of_the_wrong_size(rng, product_route):
    from rfw2s.curves import UpperPanels, dense_matvec

    G = np.eye(40)
    with pytest.raises(ValueError, match="do not tile a 30 x 30 matrix"):
        dense_matvec(UpperPanels.of_matrix(G, 16), 30)
    product = dense_matvec(G, 40)
    for X in (np.ones((1, 3)), np.ones((39, 3))):
        with pytest.raises(ValueError):
            product(X)


@pytest.mark.parametrize("M", [37, 512, 1100])
def test_symmetric_blocked_product_equals_the_plain_one(M, rng, product_route):
    from rfw2s.curves import dense_matvec

    A = rng.standard_normal((M, M))
    G = A + A.T
    X = rng.standard_normal((M, 7))
    assert np.allclose(dense_matvec(G, M)(X), G @ X / M, rtol=1e-13, atol=1e-13)
    # Blocks below the block diagonal are never read.
    from rfw2s.curves import SYMMETRIC_BLOCK

    below = np.arange(M)[:, None] // SYMMETRIC_BLOCK > np.arange(M)[None, :] // SYMMETRIC_BLOCK
    assert np.array_equal(dense_matvec(np.where(below, np.nan, G), M)(X), dense_matvec(G, M)(X))


def test_the_threaded_symmetric_product_runs_blas_at_one_thread_and_restores_it(monkeypatch, rng, product_route):
    # Its workers each own a core: BLAS threads of their own would oversubscribe the cores.
    from threadpoolctl import threadpool_info, threadpool_limits

    from rfw2s import curves

    blas_threads_in_workers = []

    class RecordingPool:
        def map(self, fn, items):
            blas_threads_in_workers.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
            return map(fn, items)

    monkeypatch.setattr(curves, "usable_cores", lambda: 2)
    monkeypatch.setitem(curves._POOLS, 2, RecordingPool())
    M = 3 * curves.SYMMETRIC_BLOCK
    A = rng.standard_normal((M, M))
    G, X = A + A.T, rng.standard_normal((M, 4))
    with threadpool_limits(limits=2, user_api="blas"):
        Y = curves.dense_matvec(G, M)(X)
        after = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert blas_threads_in_workers and set(blas_threads_in_workers) == {1}
    assert after and set(after) == {2}
    assert np.allclose(Y, G @ X / M, rtol=1e-13, atol=1e-13)


def test_lanczos_steps_run_blas_at_one_thread_only_around_a_product_that_owns_the_cores(rng):
    # BLAS threads woken by the re-orthogonalisation would spin on the product's cores; the
    # checks between steps keep BLAS's threads.
    from threadpoolctl import threadpool_info, threadpool_limits

    from rfw2s.krylov import BlockLanczos, run_to_tolerance

    M, G = 60, np.diag(np.linspace(1.0, 2.0, 60))
    blas_threads = lambda: [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    def threads_seen(owns_cores):
        in_product, in_checks = [], []

        def matvec(X):
            in_product.extend(blas_threads())
            return G @ X

        def evaluate():
            in_checks.extend(blas_threads())
            return Filtered(np.ones((1, 1)), None, None)  # unchanged curves: converged at the second check

        matvec.owns_cores = owns_cores
        with threadpool_limits(limits=2, user_api="blas"):
            result = run_to_tolerance(BlockLanczos(matvec, rng.standard_normal((M, 2)), 30), evaluate, 1e-10)
            after = set(blas_threads())
        assert result.converged
        return set(in_product), set(in_checks), after

    assert threads_seen(True) == ({1}, {2}, {2})
    assert threads_seen(False) == ({2}, {2}, {2})


@pytest.mark.parametrize("M", [37, 512, 1100])
def test_the_upper_panels_hold_the_kernel_and_give_the_same_product(M, rng, product_route):
    from rfw2s.curves import SYMMETRIC_BLOCK, UpperPanels, dense_matvec, gram_matrix, stored_kernel

    W = MODEL.sample_features(seed_sequence(1, "student", M, 0), M)
    G = gram_matrix(MODEL, W, "tiles")
    panels = stored_kernel(MODEL, W)
    assert isinstance(panels, UpperPanels) and len(panels.panels) == -(-M // SYMMETRIC_BLOCK)
    assert sum(p.size for p in panels.panels) < 0.5 * M * M + SYMMETRIC_BLOCK * M  # half the matrix
    upper = np.zeros((M, M))
    for i, (r0, r1) in enumerate(zip(panels.edges[:-1], panels.edges[1:])):
        upper[r0:r1, r0:] = panels.panels[i]
    assert np.allclose(np.triu(upper), np.triu(G), rtol=1e-15, atol=0)
    X = rng.standard_normal((M, 7))
    expected = G @ X / M
    for stored in (panels, G):  # built, or viewed in G
        assert np.allclose(dense_matvec(stored, M)(X), expected, rtol=1e-13, atol=1e-15)


def test_matrix_free_lanczos_with_the_inner_products_fused_agrees_with_eigh(cupy_backend, monkeypatch):
    from rfw2s.models.relu import kernel

    monkeypatch.setattr(kernel, "FUSED_INNER_PRODUCTS", True)
    W, teachers = _problem(256, sizes=(16, 64))
    dense = exact_curves(MODEL, W, teachers, TS, operator="eigh")
    fused = exact_curves(MODEL, W, teachers, TS, operator="tiled", backend=cupy_backend)
    assert fused.converged and np.max(np.abs(fused.losses / dense.losses - 1)) < 1e-10


@NEEDS_COMPILER
def test_a_lanczos_step_on_the_gpu_never_waits_for_the_host_and_a_check_waits_once(monkeypatch, rng):
    # Counted on the emulated CuPy, which counts every device-to-host transfer (.get(), float(),
    # bool(), ...): the steps make none, a check of the stopping rule one.
    import emulated_cupy
    from rfw2s.krylov import BlockLanczos

    cupy = emulated_cupy.install(monkeypatch)
    M, p = 120, 3
    basis, _ = np.linalg.qr(rng.standard_normal((M, M)))
    K = cupy.asarray((basis * np.geomspace(1.0, 1e-6, M)) @ basis.T)
    start = rng.standard_normal((M, p))
    start[:, 2] = start[:, 1]  # an exhausted direction: its column is zeroed on the device
    run = BlockLanczos(lambda X: K @ X, cupy.asarray(start), 40)
    before = emulated_cupy.TRANSFERS["count"]
    for _ in range(30):
        run.step()
    assert emulated_cupy.TRANSFERS["count"] == before
    theta, S, extra = run.ritz(run.basis[:5] @ K)
    assert emulated_cupy.TRANSFERS["count"] == before + 1
    assert isinstance(extra, np.ndarray) and extra.shape == (5, M)
    host = BlockLanczos(lambda X: to_numpy(K) @ X, start, 40)  # the CPU's run: the same recurrence
    for _ in range(30):
        host.step()
    assert np.allclose(host.tridiagonal(), run.tridiagonal(), rtol=0, atol=1e-12)
    assert run.second_passes == host.second_passes


@NEEDS_COMPILER
def test_lanczos_curves_on_the_gpu_transfer_once_per_check(monkeypatch):
    import emulated_cupy

    cupy = emulated_cupy.install(monkeypatch)
    W, teachers = _problem(256, sizes=(16, 64))
    G = cupy.asarray(MODEL.gram(W, W))
    c = cupy.asarray(np.stack([MODEL.gram(W, U) @ coef for U, coef in teachers], axis=1))
    m = cupy.asarray(MODEL.target_moments(W))
    before = emulated_cupy.TRANSFERS["count"]
    result = lanczos_curves(lambda X: (G @ X) / 256, 256, c, m, MODEL.target_norm2, TS)
    checks = 1 + (result.steps - 20) // 10  # from step 20, every 10 steps
    assert result.converged and emulated_cupy.TRANSFERS["count"] - before <= 1 + checks  # + R, once at the start
