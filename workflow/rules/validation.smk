# Three independent computations of the student's loss (README "Validation"): exact
# finite width, exact infinite width, and sampled-data training. Runs only for
# experiments with a `validation` block, and never blocks the main figures: nothing
# depends on it, and the figure rules are scheduled before it (priority).


rule validation:
    input:
        unpack(validation_inputs),
    output:
        table=f"{RESULTS}/validation.parquet",
        curves=f"{RESULTS}/validation_curves.parquet",
        convergence=f"{RESULTS}/validation_convergence.parquet",
    params:
        model=validation_model_json,
        seed=experiment_value("seed"),
        sizes=experiment_value("m_te"),
        m_st=lambda wc: STUDENTS[sampled_student(wc)].m_st,
        settings=lambda wc: json.dumps(EXPERIMENTS[wc.experiment]["validation"], sort_keys=True),
        backend=config["backend"],
        solver=SOLVER,
        version=SOLVER_VERSION,
        sampled_version=SAMPLED_VERSION,
        operator=lambda wc, input: operator_args(sampled_student(wc), input),
    resources:
        gpu=1,
        mem_mb=job_memory_mb("validation"),
        runtime=job_runtime_min("validation"),
    priority: 0
    log:
        f"{RESULTS}/logs/validation.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s --blas-threads all validate --model {params.model:q} --backend {params.backend}"
        " --seed {params.seed} --settings {params.settings:q} --losses {input.losses}"
        " --teachers {input.teachers} --m-te {params.sizes} --convergence {input.convergence} --m-st {params.m_st}"
        " {params.operator} --solver {params.solver[solver]} --tol {params.solver[lanczos][tol]}"
        " --max-steps {params.solver[lanczos][max_steps]}"
        " --out-table {output.table} --out-curves {output.curves}"
        " --out-convergence {output.convergence} > {log} 2>&1"


rule validation_figure:
    input:
        table=rules.validation.output.table,
        curves=rules.validation.output.curves,
        convergence=rules.validation.output.convergence,
    output:
        report(
            f"{RESULTS}/figures/validation.png",
            caption="../report/validation.rst",
            category="{experiment}",
            subcategory="validation",
        ),
        f"{RESULTS}/figures/validation.pdf",
    params:
        plot=config["plot"],
        stem=f"{RESULTS}/figures/validation",
    log:
        f"{RESULTS}/logs/validation_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation_figure.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s validation-figure --table {input.table} --curves {input.curves}"
        " --convergence {input.convergence} --title {wildcards.experiment} --out {params.stem}"
        " --dpi {params.plot[dpi]} > {log} 2>&1"
