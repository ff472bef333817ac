# Per-job curves -> the experiment's parquet tables -> its figures: Figures 2(a)/(b) for
# an experiment with one student width per teacher, the ablation figures for a grid.


rule aggregate:
    input:
        lambda wc: curve_files(wc.experiment),
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
    priority: 10
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s aggregate --experiment {wildcards.experiment} --curves {input}"
        " --out-losses {output.losses} --out-summary {output.summary} --out-fit {output.fit}"
        " --out-table {output.table} > {log} 2>&1"


rule figures:
    input:
        losses=rules.aggregate.output.losses,
        summary=rules.aggregate.output.summary,
        fit=rules.aggregate.output.fit,
    output:
        report(
            f"{RESULTS}/figures/fig2a.png",
            caption="../report/fig2a.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/fig2a.pdf",
        report(
            f"{RESULTS}/figures/fig2b.png",
            caption="../report/fig2b.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/fig2b.pdf",
    wildcard_constraints:
        experiment="|".join(SINGLE_WIDTH) or "(?!)",
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
    priority: 10
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s figures --losses {input.losses} --summary {input.summary} --fit {input.fit}"
        " --title {wildcards.experiment} --out-dir {params.out_dir}"
        " --dpi {params.plot[dpi]} --spread {params.plot[spread]} > {log} 2>&1"


rule ablation_figures:
    input:
        summary=rules.aggregate.output.summary,
        fit=rules.aggregate.output.fit,
    output:
        report(
            f"{RESULTS}/figures/ablation_heatmap.png",
            caption="../report/ablation_heatmap.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/ablation_heatmap.pdf",
        report(
            f"{RESULTS}/figures/ablation_exponent.png",
            caption="../report/ablation_exponent.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/ablation_exponent.pdf",
    wildcard_constraints:
        experiment="|".join(ABLATIONS) or "(?!)",
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
    priority: 10
    log:
        f"{RESULTS}/logs/ablation_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablation_figures.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s ablation-figures --summary {input.summary} --fit {input.fit}"
        " --title {wildcards.experiment} --out-dir {params.out_dir} --dpi {params.plot[dpi]} > {log} 2>&1"
