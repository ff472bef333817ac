# An experiment's curve tables (from the shared cache) -> its loss, summary and fit tables.


rule aggregate:
    input:
        lambda wc: PLAN.experiment_curves(wc.experiment),
    output:
        losses=f"{RESULTS}/losses.parquet",
        summary=f"{RESULTS}/summary.parquet",
        fit=f"{RESULTS}/fit.parquet",
        table=report(
            f"{RESULTS}/summary.csv",
            caption="../report/summary.rst",
            category="{experiment}",
            subcategory="tables",
        ),
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    priority: 10
    conda:
        CONDA_ENV
    params:
        recipe=tables_recipe,
    shell:
        "python3 -m rfw2s aggregate --recipe {params.recipe:q} --experiment {wildcards.experiment}"
        " --curves {input} --out-losses {output.losses} --out-summary {output.summary}"
        " --out-fit {output.fit} --out-table {output.table} > {log} 2>&1"
