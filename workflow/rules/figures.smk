# An experiment's tables -> its figures: Figures 2(a)/(b) for an experiment with one student
# width per teacher, the ablation figures for one over a list of widths. Only the plot
# settings reach these rules, so changing them redraws and never re-solves.


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
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    wildcard_constraints:
        experiment=experiments_drawing("single_width"),
    priority: 10
    conda:
        CONDA_ENV
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
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
    log:
        f"{RESULTS}/logs/ablation_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/ablation_figures.tsv"
    wildcard_constraints:
        experiment=experiments_drawing("per_width"),
    priority: 10
    conda:
        CONDA_ENV
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
    shell:
        "python3 -m rfw2s ablation-figures --summary {input.summary} --fit {input.fit}"
        " --title {wildcards.experiment} --out-dir {params.out_dir} --dpi {params.plot[dpi]} > {log} 2>&1"
