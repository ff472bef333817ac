# One curve job per student width: for each replicate's draw, the exact loss curves of every
# teacher it serves, in lockstep, through the operator the plan chose (Lanczos on a kernel
# built here, cached or rebuilt tile by tile, or the cached eigendecomposition), and the
# exact infinite-width curves. Few jobs: on a GPU a job's start-up costs more than its solve.


rule curves:
    input:
        unpack(lambda wc: rfw2s.paths.curve_inputs(PLAN, wc.key)),
    output:
        f"{CACHE}/curves/{{key}}/curves.parquet",
    log:
        f"{CACHE}/curves/{{key}}/curves.log",
    benchmark:
        f"{CACHE}/curves/{{key}}/curves.benchmark.tsv"
    conda:
        GPU_ENV
    resources:
        gpu=1,
        mem_mb=step_memory_mb("curves"),
        runtime=step_runtime_min("curves"),
    params:
        recipe=recipe("curves"),
        operator_files=curve_operator_files,
    shell:
        "python3 -m rfw2s curves --blas-threads all --gpus {resources.gpu} --recipe {params.recipe:q}"
        " --teachers {input.teachers} --operator-files {params.operator_files} --out {output} > {log} 2>&1"
