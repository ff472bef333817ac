# An experiment's curve tables (from the shared cache) -> its loss, summary and fit tables;
# and, where asked, the infinite-width loss degree by degree (from its teachers).


rule aggregate:
    input:
        lambda wc: rfw2s.paths.experiment_curves(PLAN, wc.experiment),
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
        CPU_ENV
    params:
        recipe=tables_recipe,
    shell:
        "python3 -m rfw2s aggregate --recipe {params.recipe:q} --experiment {wildcards.experiment}"
        " --curves {input} --out-losses {output.losses} --out-summary {output.summary}"
        " --out-fit {output.fit} --out-table {output.table} > {log} 2>&1"


rule degrees:
    input:
        lambda wc: rfw2s.paths.degree_inputs(PLAN, wc.experiment),
    output:
        f"{RESULTS}/degrees.parquet",
    log:
        f"{RESULTS}/logs/degrees.log",
    benchmark:
        f"{RESULTS}/benchmarks/degrees.tsv"
    priority: 10
    conda:
        CPU_ENV
    params:
        recipe=degrees_recipe,
    shell:
        "python3 -m rfw2s degrees --recipe {params.recipe:q} --teachers {input} --out {output} > {log} 2>&1"
