# Teacher fits per (M_TE, replicate), then one curve job per student draw: the exact loss
# curves of every teacher it serves, in lockstep, by the configured solver (Lanczos on the
# cached or tiled kernel, or the cached eigendecomposition).


rule teacher:
    output:
        f"{RESULTS}/teachers/m{{m_te}}_r{{replicate}}.npz",
    params:
        model=teacher_model_json,
        seed=experiment_value("seed"),
        backend=config["backend"],
        solver=SOLVER_VERSION,
    log:
        f"{RESULTS}/logs/teacher/m{{m_te}}_r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/teacher/m{{m_te}}_r{{replicate}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{PYTHON} -m rfw2s teacher --model {params.model:q} --backend {params.backend} --seed {params.seed}"
        " --m-te {wildcards.m_te} --replicate {wildcards.replicate} --out {output} > {log} 2>&1"


rule curves:
    input:
        unpack(curve_inputs),
    output:
        f"{RESULTS}/curves/{{student}}_r{{replicate}}.parquet",
    params:
        model=student_model_json,
        t=experiment_value("t"),
        backend=config["backend"],
        solver=SOLVER,
        version=SOLVER_VERSION,
        operator=lambda wc, input: operator_args(wc.student, input),
    resources:
        gpu=1,
        mem_mb=job_memory_mb("curves"),
        runtime=job_runtime_min("curves"),
    log:
        f"{RESULTS}/logs/curves/{{student}}_r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/curves/{{student}}_r{{replicate}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "{PYTHON} -m rfw2s --blas-threads all curves --model {params.model:q} --backend {params.backend}"
        " --student {input.student} {params.operator} --teachers {input.teachers}"
        " --solver {params.solver[solver]} --tol {params.solver[lanczos][tol]}"
        " --max-steps {params.solver[lanczos][max_steps]} --replicate {wildcards.replicate}"
        " --t-min {params.t[min]} --t-max {params.t[max]} --t-num {params.t[num]}"
        " --out {output} > {log} 2>&1"
