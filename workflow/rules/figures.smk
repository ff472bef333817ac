# An experiment's tables -> its figures: Figures 2(a)/(b) (at the widest student of an
# experiment over a list of widths), the ablation figures for such an experiment, and the loss
# degree by degree where asked. Only the plot settings reach these rules, so changing them
# redraws and never re-solves.


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
        report(
            f"{RESULTS}/figures/pgr.png",
            caption="../report/pgr.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/pgr.pdf",
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    priority: 10
    conda:
        CPU_ENV
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
        shown=shown_values,
    shell:
        "python3 -m rfw2s figures --losses {input.losses} --summary {input.summary} --fit {input.fit}"
        " --title {wildcards.experiment} --out-dir {params.out_dir} --show {params.shown:q}"
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
        experiment=sweeping_experiments(),
    priority: 10
    conda:
        CPU_ENV
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
        sweep=sweep_axis,
        shown=shown_values,
    shell:
        "python3 -m rfw2s ablation-figures --summary {input.summary} --fit {input.fit} --sweep {params.sweep}"
        " --show {params.shown:q} --title {wildcards.experiment} --out-dir {params.out_dir}"
        " --dpi {params.plot[dpi]} > {log} 2>&1"


rule degree_figure:
    input:
        degrees=f"{RESULTS}/degrees.parquet",
        losses=rules.aggregate.output.losses,
    output:
        report(
            f"{RESULTS}/figures/degrees.png",
            caption="../report/degrees.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/degrees.pdf",
    log:
        f"{RESULTS}/logs/degree_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/degree_figure.tsv"
    priority: 10
    conda:
        CPU_ENV
    params:
        plot=config["plot"],
        stem=f"{RESULTS}/figures/degrees",
    shell:
        "python3 -m rfw2s degree-figure --degrees {input.degrees} --losses {input.losses}"
        " --title {wildcards.experiment} --out {params.stem} --dpi {params.plot[dpi]} > {log} 2>&1"


rule accuracy_figure:
    input:
        losses=rules.aggregate.output.losses,
    output:
        report(
            f"{RESULTS}/figures/accuracy.png",
            caption="../report/accuracy.rst",
            category="{experiment}",
            subcategory="figures",
        ),
        f"{RESULTS}/figures/accuracy.pdf",
    log:
        f"{RESULTS}/logs/accuracy_figure.log",
    benchmark:
        f"{RESULTS}/benchmarks/accuracy_figure.tsv"
    wildcard_constraints:
        experiment=classification_experiments(),
    priority: 10
    conda:
        CPU_ENV
    params:
        plot=config["plot"],
        stem=f"{RESULTS}/figures/accuracy",
        shown=shown_values,
    shell:
        "python3 -m rfw2s accuracy-figure --losses {input.losses} --title {wildcards.experiment} --out {params.stem}"
        " --show {params.shown:q} --dpi {params.plot[dpi]} --spread {params.plot[spread]} > {log} 2>&1"
