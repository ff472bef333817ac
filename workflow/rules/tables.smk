# Per-job curves -> the experiment's parquet tables -> Figures 2(a) and 2(b).


rule aggregate:
    input:
        curves_of,
    output:
        losses=f"{RESULTS}/losses.parquet",
        summary=f"{RESULTS}/summary.parquet",
        fit=f"{RESULTS}/fit.parquet",
    priority: 10
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s aggregate --experiment {wildcards.experiment} --curves {input}"
        " --out-losses {output.losses} --out-summary {output.summary} --out-fit {output.fit}"
        " > {log} 2>&1"


rule figures:
    input:
        losses=rules.aggregate.output.losses,
        summary=rules.aggregate.output.summary,
        fit=rules.aggregate.output.fit,
    output:
        f"{RESULTS}/figures/fig2a.png",
        f"{RESULTS}/figures/fig2a.pdf",
        f"{RESULTS}/figures/fig2b.png",
        f"{RESULTS}/figures/fig2b.pdf",
    params:
        plot=config["plot"],
        out_dir=f"{RESULTS}/figures",
    priority: 10
    log:
        f"{RESULTS}/logs/figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s figures --losses {input.losses} --summary {input.summary} --fit {input.fit}"
        " --title {wildcards.experiment} --out-dir {params.out_dir}"
        " --dpi {params.plot[dpi]} --spread {params.plot[spread]} > {log} 2>&1"
