# Teacher fits: every teacher size of one replicate in one job (its start-up costs more
# than its fits), shared by every experiment with the same teachers.


rule teachers:
    input:
        unpack(lambda wc: rfw2s.paths.teacher_inputs(PLAN, wc.key)),
    output:
        f"{CACHE}/teachers/{{key}}/r{{replicate}}.npz",
    log:
        f"{CACHE}/teachers/{{key}}/r{{replicate}}.log",
    benchmark:
        f"{CACHE}/teachers/{{key}}/r{{replicate}}.benchmark.tsv"
    conda:
        CPU_ENV
    params:
        recipe=recipe("teachers"),
    shell:
        "python3 -m rfw2s teachers --recipe {params.recipe:q} --replicate {wildcards.replicate}"
        " --out {output} > {log} 2>&1"
