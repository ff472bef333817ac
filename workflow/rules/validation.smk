# Three independent computations of the student's loss (docs/science.md, "Validation"):
# exact finite width, exact infinite width, and sampled-data training. Runs only for
# experiments with a `validation` block, and never blocks the main figures: nothing
# depends on it, and the figure rules are scheduled before it (priority).


rule validation:
    input:
        unpack(lambda wc: rfw2s.paths.validation_inputs(PLAN, wc.experiment)),
    output:
        table=f"{RESULTS}/validation.parquet",
        curves=f"{RESULTS}/validation_curves.parquet",
        convergence=f"{RESULTS}/validation_convergence.parquet",
    log:
        f"{RESULTS}/logs/validation.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation.tsv"
    priority: 0
    conda:
        GPU_ENV
    resources:
        gpu=1,
        mem_mb=validation_memory_mb,
        runtime=validation_runtime_min,
    params:
        recipe=validation_recipe,
        operator_files=validation_operator_files,
    shell:
        "python3 -m rfw2s validate --blas-threads all --gpus {resources.gpu} --recipe {params.recipe:q}"
        " --losses {input.losses} --teachers {input.teachers} --convergence {input.convergence}"
        " --operator-files {params.operator_files}"
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
    log:
        f"{RESULTS}/logs/validation_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/validation_figure.tsv"
    conda:
        CPU_ENV
    params:
        plot=config["plot"],
        stem=f"{RESULTS}/figures/validation",
    shell:
        "python3 -m rfw2s validation-figure --table {input.table} --curves {input.curves}"
        " --convergence {input.convergence} --title {wildcards.experiment} --out {params.stem}"
        " --dpi {params.plot[dpi]} > {log} 2>&1"
