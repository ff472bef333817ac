"""The whole DAG on a tiny config: every artifact, the science's direction, and staleness."""
import copy
import re

import numpy as np
import pandas as pd
import pytest

import emulated_cupy
from conftest import GPU_MISSING
from rfw2s.analysis import FIT_COLUMNS, LOSS_COLUMNS, SUMMARY_COLUMNS
from rfw2s.artifacts import read_metadata
from workflow_helpers import TINY_EXTENSIONS, load_tiny, planned_jobs, snakemake, write_config

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny")
    config = load_tiny()
    configfile = write_config(workdir, config)
    snakemake(workdir, configfile)
    return workdir, configfile, config


@pytest.fixture(scope="module")
def extensions_run(tmp_path_factory):
    """The seconds-long versions of workflow/configs/extensions.yaml's experiments."""
    workdir = tmp_path_factory.mktemp("extensions")
    config = load_tiny(TINY_EXTENSIONS)
    configfile = write_config(workdir, config)
    snakemake(workdir, configfile)
    return workdir, configfile, config


def test_every_artifact_is_written_with_documented_columns(tiny_run):
    workdir, _, config = tiny_run
    exp = config["experiments"]["tiny"]
    out = workdir / "results" / "tiny"
    reps, sizes, n_t = exp["replicates"], exp["m_te"], exp["t"]["num"]

    losses = pd.read_parquet(out / "losses.parquet")
    assert list(losses.columns) == LOSS_COLUMNS
    assert len(losses) == reps * len(sizes) * n_t
    assert set(losses["m_st"]) == {exp["m_st"]} and set(losses["d"]) == {exp["d"]}
    assert np.allclose(losses["ratio"], losses["L_ST"] / losses["L_TE"])
    # Default solver: Lanczos (on kernels built in the curve jobs: d = 16), converged to 1e-10.
    assert set(losses["solver"]) == {"lanczos"} and (losses["achieved_tol"] <= 1e-10).all()
    assert (losses["lanczos_steps"] >= 20).all()
    assert np.allclose(np.sort(losses["t"].unique()), np.geomspace(exp["t"]["min"], exp["t"]["max"], n_t))
    assert losses.sort_values(["replicate", "m_te", "t"]).index.tolist() == list(range(len(losses)))

    summary = pd.read_parquet(out / "summary.parquet")
    assert list(summary.columns) == SUMMARY_COLUMNS and len(summary) == reps * len(sizes)
    assert (summary["L_ST_min"] <= summary["L_TE"] * summary["ratio_best"] * (1 + 1e-12)).all()

    assert np.allclose(losses["ratio_inf"], losses["L_ST_inf"] / losses["L_TE"])
    assert (summary["ratio_inf_best"] > 0).all()

    fit = pd.read_parquet(out / "fit.parquet")
    assert list(fit.columns) == FIT_COLUMNS
    assert fit["scope"].tolist() == (["all"] + ["replicate"] * reps) * 2
    assert fit["width"].tolist() == ["finite"] * (reps + 1) + ["infinite"] * (reps + 1)
    assert np.isfinite(fit["exponent"]).all() and set(fit["m_st"]) == {exp["m_st"]}

    # The experiment folder holds only its own tables, figures and validation; its curves
    # are in the shared cache, named by the student and the hash of their recipe.
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["benchmarks", "figures", "logs", "losses.parquet", "summary.parquet", "summary.csv", "fit.parquet",
         "validation.parquet", "validation_curves.parquet", "validation_convergence.parquet"])
    (curves,) = (workdir / "results" / "cache" / "curves").glob(f"{_student(exp)}-*/curves.parquet")
    meta = read_metadata(curves)
    assert meta["backend"] == "numpy" and "numpy" in meta["versions"]
    recipe = meta["recipe"]
    assert recipe["step"] == "curves" and recipe["m_st"] == exp["m_st"] and recipe["m_te"] == exp["m_te"]
    assert recipe["operator"] == "stored" and recipe["learning_rules"] == [{"name": "gradient_flow", "grid": exp["t"]}]
    # The Funk-Hecke degree and its error bound of every infinite-width curve are recorded.
    truncation = meta["infinite_width_truncation"]
    assert len(truncation) == reps * len(sizes)
    assert all(v["degree"] >= 16 and v["relative_error_bound"] <= 1e-10 for v in truncation.values())
    assert curves.stat().st_mode & 0o044  # readable by others
    # Nothing cached at d = 16: the kernel is built in the curve job, the draws are drawn there.
    assert not (workdir / "results" / "cache" / "kernel").exists()

    for name in ("fig2a", "fig2b", "validation"):
        assert (out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    assert (curves.parent / "curves.log").read_text().count("backend: numpy") == 1  # one job


def _student(exp):
    return f"relu_sphere-d{exp['d']}-m{exp['m_st']}-seed{exp['seed']}"


def test_the_tables_are_those_of_the_code_before_the_rework(tiny_run):
    from reference_tables import differences

    from reference_tables import REFERENCE

    workdir = tiny_run[0]
    for folder in sorted((REFERENCE / "tiny").iterdir()):
        assert differences(workdir / "results", "tiny", folder.name) == [], folder.name


def test_validation_table_shows_the_three_computations_agree(tiny_run):
    workdir, _, config = tiny_run
    settings = config["experiments"]["tiny"]["validation"]
    out = workdir / "results" / "tiny"
    table = pd.read_parquet(out / "validation.parquet").set_index(["comparison", "m_te"])
    sizes = config["experiments"]["tiny"]["m_te"]
    assert set(table.index) == {(c, m) for m in sizes
                                for c in ("finite_vs_infinite", "sampled_vs_finite", "sampled_vs_infinite")}
    assert (table.loc["sampled_vs_finite", "max_abs_z"] < 4).all()
    assert (table.loc["sampled_vs_finite", "max_rel_diff"] < 0.03).all()

    convergence = pd.read_parquet(out / "validation_convergence.parquet")
    assert set(convergence["m_st"]) == set(map(float, settings["convergence_m_st"])) | {np.inf}
    curves = pd.read_parquet(out / "validation_curves.parquet")
    assert set(curves["method"]) == {"sampled", "finite", "infinite"}
    assert (curves.loc[curves["method"] == "sampled", "se"] > 0).all()


def test_best_ratio_falls_as_the_teacher_grows(tiny_run):
    workdir = tiny_run[0]
    summary = pd.read_parquet(workdir / "results" / "tiny" / "summary.parquet")
    mean_best = summary.groupby("m_te")["ratio_best"].mean()
    assert mean_best.is_monotonic_decreasing
    assert mean_best.iloc[0] < 1.0  # weak-to-strong already at the smallest teacher


def test_complete_run_is_not_stale(tiny_run):
    workdir, configfile, _ = tiny_run
    assert planned_jobs(workdir, configfile) == {}


def test_ablation_grid_and_its_figures(tiny_run):
    workdir, _, config = tiny_run
    exp = config["experiments"]["tiny_ablation"]
    out = workdir / "results" / "tiny_ablation"
    summary = pd.read_parquet(out / "summary.parquet")
    assert len(summary) == exp["replicates"] * len(exp["m_te"]) * len(exp["m_st"])
    fit = pd.read_parquet(out / "fit.parquet")
    assert sorted(fit["m_st"].unique()) == sorted(exp["m_st"])
    # The ablation's widest student is tiny's: identical curves, read from the same cache.
    same = summary[summary["m_st"] == 1024].reset_index(drop=True)
    tiny = pd.read_parquet(workdir / "results" / "tiny" / "summary.parquet")
    pd.testing.assert_frame_equal(same[tiny.columns], tiny)
    for name in ("ablation_heatmap", "ablation_exponent"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0


def test_the_ablation_shares_kernels_teachers_and_curves(tmp_path):
    config = load_tiny()
    alone = {k: v for k, v in config.items() if k != "experiments"} | {"kernel_cache": "always"}
    alone["experiments"] = {"tiny": config["experiments"]["tiny"]}
    both = dict(alone, experiments={n: config["experiments"][n] for n in ("tiny", "tiny_ablation")})
    plan_alone = planned_jobs(tmp_path, write_config(tmp_path, alone, "alone.yaml"))
    plan_both = planned_jobs(tmp_path, write_config(tmp_path, both, "both.yaml"))
    # Every curve of tiny_ablation (same draws, teachers and times) is one of tiny's.
    for rule in ("kernel", "eigh", "teachers", "curves"):
        assert plan_both.get(rule, 0) == plan_alone.get(rule, 0), rule
    assert plan_both["aggregate"] == plan_alone["aggregate"] + 1
    # Other times: the same kernels and teachers shared, the curves its own.
    other_times = copy.deepcopy(both)
    other_times["experiments"]["tiny_ablation"]["t"]["num"] = 30
    plan_other = planned_jobs(tmp_path, write_config(tmp_path, other_times, "other.yaml"))
    assert plan_alone["kernel"] > 0
    for rule in ("kernel", "teachers"):
        assert plan_other.get(rule, 0) == plan_alone.get(rule, 0), rule
    assert plan_other["curves"] == plan_alone["curves"] + 2  # two widths, each one job for both replicates


def test_one_experiment_runs_alone_by_its_name(tmp_path):
    config = write_config(tmp_path, load_tiny())
    alone = planned_jobs(tmp_path, config, "tiny_model23")
    assert alone["tiny_model23"] == 1 and alone["aggregate"] == 1 and alone["figures"] == 1
    assert "validation" not in alone and "all" not in alone
    assert alone["curves"] == 3  # three teachers, each its own M_ST = 2 d (one job for both replicates)
    assert alone["teachers"] == 2  # one job per replicate, every size in it


@pytest.mark.parametrize("setting, solver", [({"kernel_cache": "always"}, "lanczos"),
                                             ({"matrix_free": "always"}, "lanczos-matrix-free")])
def test_a_cached_kernel_or_tiles_give_the_built_kernels_curves(tiny_run, tmp_path, setting, solver):
    workdir, _, config = tiny_run
    variant = {k: v for k, v in config.items() if k != "experiments"} | setting
    exp = copy.deepcopy(config["experiments"]["tiny"])
    del exp["validation"]
    variant["experiments"] = {"tiny": exp}
    configfile = write_config(tmp_path, variant)
    cached = setting.get("kernel_cache") == "always"
    assert planned_jobs(tmp_path, configfile).get("kernel", 0) == (exp["replicates"] if cached else 0)
    snakemake(tmp_path, configfile)
    ours = pd.read_parquet(tmp_path / "results" / "tiny" / "losses.parquet")
    built = pd.read_parquet(workdir / "results" / "tiny" / "losses.parquet")
    assert set(ours["solver"]) == {solver} and (ours["achieved_tol"] <= 1e-10).all()
    np.testing.assert_allclose(ours["L_ST"], built["L_ST"], rtol=1e-9, atol=0)  # both within 1e-10
    kernels = list((tmp_path / "results" / "cache" / "kernel").glob(f"{_student(exp)}-*"))
    assert len(kernels) == (1 if cached else 0)
    for r in range(exp["replicates"] if cached else 0):
        G = np.load(kernels[0] / f"gram_r{r}.npy", mmap_mode="r")
        assert G.shape == (exp["m_st"], exp["m_st"]) and np.allclose(G, G.T)
        assert (kernels[0] / f"gram_r{r}.npy").stat().st_mode & 0o044  # readable by others
        assert (kernels[0] / f"r{r}.log").read_text().count("backend: numpy") == 1


def _dry_run_outputs(workdir, configfile, env=None) -> list[str]:
    """Every file a dry run would make, sorted (the job list, with each key)."""
    proc = snakemake(workdir, configfile, "--dry-run", env=env)
    return sorted(re.findall(r"^\s+output: (.+)$", proc.stdout + proc.stderr, re.M))


@pytest.mark.skipif(GPU_MISSING is None, reason="needs a machine without a GPU")
def test_a_declared_gpu_target_plans_the_same_jobs_whether_the_planning_machine_has_a_gpu(tmp_path):
    # backend: cupy with gpu_memory_gb: the plan needs no GPU and does not look for one; with the
    # emulated CuPy importable (a GPU found) the jobs and their keys are the same.
    config = dict(load_tiny(), backend="cupy", gpu_memory_gb=16)
    configfile = write_config(tmp_path, config)
    without = _dry_run_outputs(tmp_path, configfile)
    with_gpu = _dry_run_outputs(tmp_path, configfile, env=emulated_cupy.subprocess_environment(tmp_path / "emu"))
    assert without and without == with_gpu
    # auto on this machine plans the jobs of numpy.
    auto = _dry_run_outputs(tmp_path, write_config(tmp_path, dict(load_tiny(), backend="auto"), "auto.yaml"))
    numpy_jobs = _dry_run_outputs(tmp_path, write_config(tmp_path, dict(load_tiny(), backend="numpy"), "np.yaml"))
    assert auto == numpy_jobs and auto != without


@pytest.mark.skipif(GPU_MISSING is not None and emulated_cupy.COMPILER is None, reason="no GPU, and no g++ to emulate one")
def test_the_dag_on_cupy_gives_the_numpy_tables(tiny_run, tmp_path):
    # The GPU's defaults: each curve job builds its kernel on the device; the validation's
    # sampled training runs there too. Without a GPU every job imports the emulated CuPy.
    workdir, _, config = tiny_run
    variant = {k: v for k, v in config.items() if k != "experiments"} | {"backend": "cupy"}
    variant["experiments"] = {"tiny": copy.deepcopy(config["experiments"]["tiny"])}
    configfile = write_config(tmp_path, variant)
    env = emulated_cupy.subprocess_environment(tmp_path / "emulated") if GPU_MISSING else None
    assert planned_jobs(tmp_path, configfile, env=env).get("kernel", 0) == 0
    snakemake(tmp_path, configfile, env=env)
    ours, numpy_run = tmp_path / "results" / "tiny", workdir / "results" / "tiny"
    for name, columns in (("losses", ["L_ST", "L_TE"]), ("summary", ["L_ST_min", "ratio_best", "t_best"]),
                          ("validation_curves", ["L_ST", "se"])):
        theirs, mine = pd.read_parquet(numpy_run / f"{name}.parquet"), pd.read_parquet(ours / f"{name}.parquet")
        assert len(mine) == len(theirs)
        np.testing.assert_allclose(mine[columns], theirs[columns], rtol=1e-9, atol=0, err_msg=name)
    assert read_metadata(ours / "validation_curves.parquet")["backend"] == "cupy"
    cache = tmp_path / "results" / "cache" / "curves"
    logs = sorted(cache.glob("*/curves.log"))
    assert len(logs) == len(list(cache.glob("*/curves.parquet"))) > 0
    assert all("backend: cupy (planned cupy)" in log.read_text() for log in logs)


def test_model23_curves_and_near_quadratic_improvement(tiny_run):
    workdir, _, config = tiny_run
    out = workdir / "results" / "tiny_model23"
    summary = pd.read_parquet(out / "summary.parquet")
    # M_ST = 2 d with d = round(M_TE^1.5): 16, 54, 128.
    assert summary.groupby("m_te")["m_st"].first().tolist() == [16, 54, 128]
    assert summary["ratio_inf_best"].notna().all()
    assert (out / "figures" / "fig2b.png").stat().st_size > 0


def _variant(tiny_run, edit):
    workdir, _, config = tiny_run
    changed = copy.deepcopy(config)
    edit(changed)
    return planned_jobs(workdir, write_config(workdir, changed, "variant.yaml"))


def test_changing_the_time_grid_reruns_only_that_experiments_curves_tables_and_figures(tiny_run):
    exp = tiny_run[2]["experiments"]["tiny"]
    widths = {exp["m_st"]} | set(exp["validation"]["convergence_m_st"])
    plan = _variant(tiny_run, lambda c: c["experiments"]["tiny"]["t"].update(num=80))
    # tiny_ablation shared tiny's curves (same times): they keep their files, so nothing of
    # it reruns; tiny gets new curves (one job per student width) under new keys.
    assert plan == {"curves": len(widths), "aggregate": 1, "figures": 1, "validation": 1, "validation_figure": 1,
                    "all": 1}


def test_changing_a_plot_setting_reruns_only_figures(tiny_run):
    experiments = tiny_run[2]["experiments"].values()
    plan = _variant(tiny_run, lambda c: c["plot"].update(dpi=72))
    sweeps = sum(isinstance(e["m_st"], list) or isinstance(e.get("samples", {}).get("n"), list) for e in experiments)
    expected = {"figures": len(experiments), "ablation_figures": sweeps, "all": 1,
                "validation_figure": sum("validation" in e for e in experiments),
                "degree_figure": sum("degrees" in e for e in experiments)}
    assert plan == {rule: n for rule, n in expected.items() if n}


def test_adding_a_teacher_size_leaves_the_other_experiments_alone(tiny_run):
    exp = tiny_run[2]["experiments"]["tiny"]
    reps, widths = exp["replicates"], {exp["m_st"]} | set(exp["validation"]["convergence_m_st"])
    plan = _variant(tiny_run, lambda c: c["experiments"]["tiny"]["m_te"].append(64))
    # tiny's teachers are a new set (one job per replicate, every size), so are its curves
    # (one job per width); tiny_ablation keeps the files it shared with tiny.
    assert plan == {"teachers": reps, "curves": len(widths), "aggregate": 1, "figures": 1, "validation": 1,
                    "validation_figure": 1, "all": 1}


def test_summary_command_prints_the_table_for_a_person(tiny_run):
    import subprocess
    import sys

    workdir, _, config = tiny_run
    proc = subprocess.run([sys.executable, "-m", "rfw2s", "summary", str(workdir / "results" / "tiny")],
                          capture_output=True, text=True, check=True)
    for m_te in config["experiments"]["tiny"]["m_te"]:
        assert f" {m_te} " in proc.stdout
    assert "fitted exponent" in proc.stdout and "ratio_best" in proc.stdout


def test_html_report_holds_every_figure_and_the_summary_tables(tiny_run):
    workdir, configfile, config = tiny_run
    report = workdir / "results" / "report.html"
    proc = snakemake(workdir, configfile, "--report", str(report))
    assert "Undefined substitution" not in proc.stdout + proc.stderr  # captions are valid reStructuredText
    html = report.read_text(errors="replace")
    assert len(html) > 100_000  # self-contained: the figures are embedded
    for name, exp in config["experiments"].items():
        figures = ["ablation_heatmap", "ablation_exponent"] if isinstance(exp["m_st"], list) else ["fig2a", "fig2b"]
        figures += ["validation"] if "validation" in exp else []
        for figure in figures:
            assert f"results/{name}/figures/{figure}.png" in html, (name, figure)
        assert f"results/{name}/summary.csv" in html


def test_slurm_profile_dry_run_requests_gpus_and_size_derived_memory(tmp_path):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from workflow_helpers import REPO

    configfile = write_config(tmp_path, load_tiny())
    proc = snakemake(tmp_path, configfile, "--dry-run", "--workflow-profile", str(REPO / "workflow/profiles/slurm"))
    text = proc.stdout + proc.stderr
    jobs = re.findall(r"rule (\w+):.*?resources: ([^\n]*)", text, re.S)
    heavy = [res for rule, res in jobs if rule in ("kernel", "curves", "validation")]
    assert heavy and all("gpu=1" in res and "cpus_per_task=8" in res for res in heavy)
    mem = {int(m) for res in heavy for m in re.findall(r"mem_mb=(\d+)", res)}
    assert len(mem) > 1  # derived from each student's size, not one default


def test_a_partial_run_names_its_report_command_and_that_command_works(tmp_path):
    config = write_config(tmp_path, load_tiny())
    proc = snakemake(tmp_path, config, "tiny_model23")
    command = "snakemake tiny_model23 --report results/report.html"
    assert f"HTML report of what this run made: {command}" in proc.stdout + proc.stderr
    snakemake(tmp_path, config, *command.split()[1:])
    html = (tmp_path / "results" / "report.html").read_text(errors="replace")
    assert "results/tiny_model23/figures/fig2a.png" in html and "results/tiny/" not in html
    # The whole config's report holds what finished, and names what did not with its command.
    (tmp_path / "results" / "report.html").unlink()
    proc = snakemake(tmp_path, config, "--report", "results/report.html")
    for name in ("tiny", "tiny_ablation"):
        assert (f"report: experiment {name} has not finished and is left out; run it with snakemake {name} --cores 1 "
                "--resources gpu=1") in proc.stdout + proc.stderr
    html = (tmp_path / "results" / "report.html").read_text(errors="replace")
    assert "results/tiny_model23/figures/fig2a.png" in html and "results/tiny/" not in html
    # Nothing finished: one line that says how to run it.
    empty = tmp_path / "empty"
    proc = snakemake(empty, write_config(empty.mkdir() or empty, load_tiny()), "--report", "results/report.html",
                     check=False)
    assert proc.returncode != 0 and "no experiment of this config has finished" in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr


def test_a_harmonic_target_is_broken_into_its_degrees_with_the_invisible_one_a_floor(extensions_run):
    workdir, _, config = extensions_run
    exp = config["experiments"]["tiny_harmonic"]
    out = workdir / "results" / "tiny_harmonic"
    degrees = pd.read_parquet(out / "degrees.parquet")
    losses = pd.read_parquet(out / "losses.parquet")
    assert set(degrees["degree"]) == {"1", "2", "3", "rest"}
    # The parts add up to the infinite-width loss of the loss table, at every time.
    total = degrees.groupby(["replicate", "m_te", "t"])["L_ST_inf"].sum().reset_index()
    both = total.merge(losses, on=["replicate", "m_te", "t"], suffixes=("_parts", ""))
    assert len(both) == len(losses) and np.allclose(both["L_ST_inf_parts"], both["L_ST_inf"], rtol=1e-10)
    # Degree 3 (odd, >= 3) is invisible to ReLU features: its part never moves, and is the floor.
    a = {int(k): v for k, v in exp["target"]["coefficients"].items()}
    floor = a[3] ** 2 / sum(v * v for v in a.values())
    assert np.allclose(degrees.loc[degrees["degree"] == "3", "L_ST_inf"], floor, rtol=1e-10)
    summary = pd.read_parquet(out / "summary.parquet")
    assert np.allclose(summary["L_floor"], floor, rtol=1e-12) and (summary["L_ST_min"] > floor).all()
    assert (out / "figures" / "degrees.png").stat().st_size > 0


def test_the_relu_network_target_on_gaussian_inputs_gets_figure_2_at_its_widest_student(extensions_run):
    workdir, _, config = extensions_run
    out = workdir / "results" / "tiny_relu_gaussian"
    summary = pd.read_parquet(out / "summary.parquet")
    assert sorted(summary["m_st"].unique()) == sorted(config["experiments"]["tiny_relu_gaussian"]["m_st"])
    # The centred constant leaves a radial part no student reaches; every loss stays above it.
    assert (summary["L_floor"] > 0).all() and (summary["L_ST_min"] > summary["L_floor"]).all()
    assert (summary["L_ST_inf_min"] > summary["L_floor"]).all()
    for name in ("fig2a", "fig2b", "ablation_heatmap", "ablation_exponent"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0


def test_the_peer_linear_model_runs_with_its_student_width_rule(extensions_run):
    workdir = extensions_run[0]
    summary = pd.read_parquet(workdir / "results" / "tiny_peer" / "summary.parquet")
    # M_ST = round(d^1.25) with d = round(M_TE^1.5): 8 -> 13, 27 -> 62.
    assert summary.groupby("m_te")["m_st"].first().tolist() == [13, 62]
    assert summary["ratio_inf_best"].notna().all() and (summary["L_floor"] == 0).all()
    fit = pd.read_parquet(workdir / "results" / "tiny_peer" / "fit.parquet")
    assert fit["m_st"].isna().all()  # the width varies with the teacher


def test_a_student_on_samples_by_three_rules_gets_a_fit_per_sample_size_and_rule(extensions_run):
    workdir, _, config = extensions_run
    exp = config["experiments"]["tiny_samples"]
    out = workdir / "results" / "tiny_samples"
    losses = pd.read_parquet(out / "losses.parquet")
    assert set(losses["n"]) == {128.0, 1024.0, np.inf}
    assert set(losses["rule"]) == {"gradient_flow", "gradient_descent", "ridge"}
    # The infinite-width student is of the population only; gradient descent's time is eta k.
    assert losses.loc[losses["n"] < np.inf, "L_ST_inf"].isna().all()
    assert losses.loc[losses["n"] == np.inf, "L_ST_inf"].notna().all()
    gd = losses[(losses["rule"] == "gradient_descent") & (losses["grid"] > 0)]
    eta = (gd["t"] / gd["grid"]).groupby([gd["replicate"], gd["n"]])
    assert np.allclose(eta.max(), eta.min(), rtol=1e-12)  # one step per draw and sample: eta = 1 / lam_max
    assert losses.loc[losses["rule"] == "ridge", "t"].isna().all()
    assert set(losses.loc[losses["n"] < np.inf, "solver"]) == {"sample-lanczos"}
    fit = pd.read_parquet(out / "fit.parquet")
    pooled = fit[(fit["scope"] == "all") & (fit["width"] == "finite")]
    assert len(pooled) == 3 * 3 and set(pooled["n"]) == {128.0, 1024.0, np.inf}
    # Teachers fitted on 512 inputs of their own are no better than on the population.
    from rfw2s.models import relu_sphere
    from rfw2s.seeding import draw
    from rfw2s.solve import fit_teacher

    summary = pd.read_parquet(out / "summary.parquet")
    ours = summary.groupby(["replicate", "m_te"])["L_TE"].first()
    model = relu_sphere(exp["d"])
    population = {(r, m): fit_teacher(model, draw(model, exp["seed"], "teacher", m, r)).loss for r, m in ours.index}
    assert all(ours[k] >= population[k] * (1 - 1e-12) for k in ours.index)
    assert any(ours[k] > population[k] * 1.01 for k in ours.index)
    assert exp["teacher_samples"]["n"] == 512
    for name in ("fig2a", "fig2b", "ablation_heatmap", "ablation_exponent"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 0
