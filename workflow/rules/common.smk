# Config validation (before any job runs), the plan of students and curves, and the
# helpers that hand each rule only the part of the config it depends on (a plot setting
# never re-solves a model).
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path

import yaml
from snakemake.utils import validate

# The workflow always runs the rfw2s source that sits beside it, here and in every
# job (jobs inherit the environment; a cluster job re-reads this file). The rest of
# PYTHONPATH stays, and a job's `python3` is the one running Snakemake (first on PATH):
# a job must import what this process found (CuPy, for the backend resolved below). A
# conda environment's activation (--sw-deployment-method conda) still puts its own first.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(
    PYTHONPATH=os.pathsep.join([SRC] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                        if p and p != SRC]),
    PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
)
import rfw2s.config  # noqa: E402
import rfw2s.models  # noqa: E402
from rfw2s.backend import BackendError, resolve  # noqa: E402
from rfw2s.sample import SAMPLED_VERSION  # noqa: E402
from rfw2s.solve import EIGH_VERSION, SOLVER_VERSION  # noqa: E402

# Models defined outside the package (config key model_plugins) register on import,
# here and, through the environment, in every job.
PLUGINS = [str(Path(p).resolve()) for p in config.get("model_plugins", [])]
rfw2s.models.load_plugins(PLUGINS)
os.environ.update({rfw2s.models.PLUGINS_VARIABLE: os.pathsep.join(PLUGINS)})

rfw2s.config.normalize(config)
with open(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml") as fh:
    _schema = rfw2s.config.compose_schema(yaml.safe_load(fh))
with tempfile.TemporaryDirectory() as _tmp:
    _schema_path = Path(_tmp) / "config.schema.yaml"
    _schema_path.write_text(yaml.safe_dump(_schema))
    validate(config, str(_schema_path))
try:
    BACKEND = resolve(config["backend"]).name
except BackendError as exc:
    raise ValueError(f"config key 'backend': {exc}") from None
for _name in rfw2s.config.drop_gpu_only(config, BACKEND):
    logger.warning(
        f"experiment {_name} skipped: it is marked gpu_only and no GPU is usable here; run it "
        "anyway with --config run_gpu_only_on_cpu=true"
    )
rfw2s.config.check(config, backend=BACKEND)

EXPERIMENTS = config["experiments"]
# Conda environment of every rule (--sw-deployment-method conda), relative to rules/.
CONDA_ENV = "../../envs/rfw2s-gpu.yaml" if BACKEND == "cupy" else "../../envs/rfw2s.yaml"
RESULTS = "results/{experiment}"
CACHE = "results/cache/{student}"
SOLVER = rfw2s.config.solver_settings(config)
MEMORY = rfw2s.config.memory_bytes(BACKEND)
# (experiment, student key) -> (student, teacher sizes it serves); one curve job each.
GROUPS = rfw2s.config.curve_jobs(EXPERIMENTS)
# Teachers and curve jobs with the same inputs in several experiments are computed once,
# under the first of them (their files are read from there).
TEACHER_OWNER, CURVE_OWNER = rfw2s.config.owners(EXPERIMENTS, GROUPS)
STUDENTS = {key: group[0] for (_, key), group in GROUPS.items()}
OPERATOR = {key: rfw2s.config.operator(s, SOLVER, MEMORY, BACKEND) for key, s in STUDENTS.items()}
ABLATIONS = [n for n, e in EXPERIMENTS.items() if rfw2s.config.is_ablation(e)]
SINGLE_WIDTH = [n for n in EXPERIMENTS if n not in ABLATIONS]


wildcard_constraints:
    experiment="|".join(EXPERIMENTS),
    student="|".join(STUDENTS),
    replicate=r"\d+",
    m_te=r"\d+",
    m_st=r"\d+",


def experiment_value(key):
    return lambda wc: EXPERIMENTS[wc.experiment][key]


def job_memory_mb(step):
    """Resource function: the step's peak memory for its student, from the same estimates
    the config check uses, plus 1 GiB for the interpreter and libraries."""

    def mem_mb(wc):
        key = wc.student if hasattr(wc, "student") else sampled_student(wc)
        s = STUDENTS[key]
        layouts = {"kernel": rfw2s.config.kernel_job_layout(s.spec.get("d", 0)), "eigh": "eigh"}
        how = layouts.get(step, OPERATOR[key])
        teachers = len(EXPERIMENTS[wc.experiment]["m_te"]) if hasattr(wc, "experiment") else 1
        need = rfw2s.config.memory_needed(s.m_st, s.spec.get("d", 0), how, teachers, SOLVER["lanczos"]["max_steps"])
        return 1024 + need // 2**20

    return mem_mb


def job_runtime_min(step):
    """Resource function: a generous time limit in minutes, from the student's width (CPU
    scaling: dense eigh ~ M^3, measured 9 min at 16384 on 2 cores; the others ~ M^2)."""

    def runtime(wc):
        key = wc.student if hasattr(wc, "student") else sampled_student(wc)
        M = STUDENTS[key].m_st
        scale = (M / 16384) ** 3 * 30 if step == "eigh" else (M / 16384) ** 2 * 20
        return int(15 + scale)

    return runtime


def student_value(key):
    return lambda wc: getattr(STUDENTS[wc.student], key)


def student_model_json(wc):
    return rfw2s.config.spec_json(STUDENTS[wc.student].spec)


def validation_model_json(wc):
    # Validation requires a model that does not change with the teacher size (checked).
    exp = EXPERIMENTS[wc.experiment]
    return rfw2s.config.spec_json(rfw2s.config.model_spec(exp, exp["m_te"][0]))


def operator_inputs(key, replicate):
    """The cached artifacts a solve on student ``key`` reads (kernel or spectrum, if any)."""
    base = f"results/cache/{key}"
    inputs = {}
    if OPERATOR[key] == "eigh":
        inputs.update(eigvals=f"{base}/eigvals_r{replicate}.npy", eigvecs=f"{base}/eigvecs_r{replicate}.npy")
    elif OPERATOR[key] == "dense":
        inputs["gram"] = f"{base}/gram_r{replicate}.npy"
    return inputs


def operator_args(key, input):
    how = OPERATOR[key]
    if how == "eigh":
        return f"--eigvals {input.eigvals} --eigvecs {input.eigvecs}"
    if how == "dense":
        return f"--gram {input.gram}"
    return "--build-kernel" if how == "built" else "--matrix-free"


def curve_inputs(wc):
    """Every replicate's cached operator (if any) and teachers: one job per student width."""
    replicates = range(EXPERIMENTS[wc.experiment]["replicates"])
    per_replicate = [operator_inputs(wc.student, r) for r in replicates]
    inputs = {name: [files[name] for files in per_replicate] for name in per_replicate[0]}
    inputs["teachers"] = sorted({teacher_file(wc.experiment, m, r) for m in teacher_sizes(wc) for r in replicates})
    return inputs


def teacher_sizes(wc):
    return GROUPS[(wc.experiment, wc.student)][1]


def teacher_file(experiment, m_te, replicate):
    """The file holding teacher ``m_te`` of ``replicate``: its owner's, one per replicate."""
    return f"results/{TEACHER_OWNER[(experiment, int(m_te))]}/teachers/r{replicate}.npz"


def owned_teacher_sizes(experiment):
    """Teacher sizes whose fits this experiment computes (the others are read from an
    earlier experiment's files)."""
    return [int(m) for m in EXPERIMENTS[experiment]["m_te"] if TEACHER_OWNER[(experiment, int(m))] == experiment]


def teacher_models(wc):
    """One model spec per owned teacher size, shell-quoted (a model may change with M_TE)."""
    exp = EXPERIMENTS[wc.experiment]
    return " ".join(shlex.quote(rfw2s.config.spec_json(rfw2s.config.model_spec(exp, m)))
                    for m in owned_teacher_sizes(wc.experiment))


def curve_files(experiment, widths=None):
    """Curve tables (one per student width, every replicate in it) of an experiment's plan,
    or of its teachers at other student ``widths``."""
    keys = rfw2s.config.student_groups(EXPERIMENTS[experiment], widths)
    return [f"results/{CURVE_OWNER[(experiment, key)]}/curves/{key}.parquet" for key in keys]


def teacher_files(experiment, replicate):
    """The files holding every teacher of ``experiment`` for ``replicate``."""
    return sorted({teacher_file(experiment, m_te, replicate) for m_te in EXPERIMENTS[experiment]["m_te"]})


def all_outputs(names):
    out = []
    for name in names:
        exp = EXPERIMENTS[name]
        validated = ["validation"] if "validation" in exp else []
        figures = ["ablation_heatmap", "ablation_exponent"] if name in ABLATIONS else ["fig2a", "fig2b"]
        out += [f"results/{name}/{t}.parquet" for t in ["losses", "summary", "fit"] + validated]
        out += [f"results/{name}/figures/{f}.{ext}" for f in figures + validated for ext in ("png", "pdf")]
    return out


def sampled_student(wc):
    exp = EXPERIMENTS[wc.experiment]
    return rfw2s.config.student(exp, exp["m_te"][0], exp["validation"]["sampled"]["m_st"]).key


def validation_inputs(wc):
    inputs = operator_inputs(sampled_student(wc), 0)
    inputs.update(
        losses=f"results/{wc.experiment}/losses.parquet",
        teachers=teacher_files(wc.experiment, 0),
        convergence=curve_files(wc.experiment, EXPERIMENTS[wc.experiment]["validation"]["convergence_m_st"]),
    )
    return inputs
