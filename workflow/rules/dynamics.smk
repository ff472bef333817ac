# Teacher fits per replicate (every size in one job), then one curve job per student
# width: for each replicate's draw, the exact loss curves of every teacher it serves, in
# lockstep, by the configured solver (Lanczos on the cached or tiled kernel, or the cached
# eigendecomposition). Few jobs: on a GPU a job's start-up costs more than its solve.


rule teachers:
    output:
        f"{RESULTS}/teachers/r{{replicate}}.npz",
    params:
        models=teacher_models,
        sizes=lambda wc: owned_teacher_sizes(wc.experiment),
        seed=experiment_value("seed"),
        backend=config["backend"],
        solver=SOLVER_VERSION,
    log:
        f"{RESULTS}/logs/teachers/r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/teachers/r{{replicate}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s teacher --model {params.models} --backend {params.backend} --seed {params.seed}"
        " --m-te {params.sizes} --replicate {wildcards.replicate} --out {output} > {log} 2>&1"


rule curves:
    input:
        unpack(curve_inputs),
    output:
        f"{RESULTS}/curves/{{student}}.parquet",
    params:
        model=student_model_json,
        seed=student_value("seed"),
        m_st=student_value("m_st"),
        t=experiment_value("t"),
        backend=config["backend"],
        solver=SOLVER,
        version=SOLVER_VERSION,
        replicates=lambda wc: list(range(EXPERIMENTS[wc.experiment]["replicates"])),
        sizes=teacher_sizes,
        operator=lambda wc, input: operator_args(wc.student, input),
    resources:
        gpu=1,
        mem_mb=job_memory_mb("curves"),
        runtime=job_runtime_min("curves"),
    log:
        f"{RESULTS}/logs/curves/{{student}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/curves/{{student}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s --blas-threads all curves --model {params.model:q} --backend {params.backend}"
        " --seed {params.seed} --m-st {params.m_st} --replicate {params.replicates} {params.operator}"
        " --teachers {input.teachers} --m-te {params.sizes}"
        " --solver {params.solver[solver]} --tol {params.solver[lanczos][tol]}"
        " --max-steps {params.solver[lanczos][max_steps]}"
        " --t-min {params.t[min]} --t-max {params.t[max]} --t-num {params.t[num]}"
        " --out {output} > {log} 2>&1"
