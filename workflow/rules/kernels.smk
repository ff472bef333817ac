# The feature-kernel matrix of a student draw, where the plan caches it, and its dense
# eigendecomposition (solver: eigh). No job writes the draws: each job that needs one draws
# it from its seed, which costs less than a job's start-up. The dense steps hold the `gpu`
# resource, so they run one at a time and may use every CPU core for BLAS/LAPACK.


rule kernel:
    input:
        unpack(lambda wc: rfw2s.paths.kernel_inputs(PLAN, wc.key)),
    output:
        f"{CACHE}/kernel/{{key}}/gram_r{{replicate}}.npy",
    log:
        f"{CACHE}/kernel/{{key}}/r{{replicate}}.log",
    benchmark:
        f"{CACHE}/kernel/{{key}}/r{{replicate}}.benchmark.tsv"
    conda:
        GPU_ENV
    resources:
        gpu=1,
        mem_mb=step_memory_mb("kernel"),
        runtime=step_runtime_min("kernel"),
    params:
        recipe=recipe("kernel"),
    shell:
        "python3 -m rfw2s kernel --blas-threads all --gpus {resources.gpu} --recipe {params.recipe:q}"
        " --replicate {wildcards.replicate} --out {output} > {log} 2>&1"


rule eigh:
    input:
        lambda wc: rfw2s.paths.eigh_input(PLAN, wc.key, int(wc.replicate)),
    output:
        eigvals=f"{CACHE}/eigh/{{key}}/eigvals_r{{replicate}}.npy",
        eigvecs=f"{CACHE}/eigh/{{key}}/eigvecs_r{{replicate}}.npy",
    log:
        f"{CACHE}/eigh/{{key}}/r{{replicate}}.log",
    benchmark:
        f"{CACHE}/eigh/{{key}}/r{{replicate}}.benchmark.tsv"
    conda:
        GPU_ENV
    resources:
        gpu=1,
        mem_mb=step_memory_mb("eigh"),
        runtime=step_runtime_min("eigh"),
    params:
        recipe=recipe("eigh"),
    shell:
        "python3 -m rfw2s eigh --blas-threads all --gpus {resources.gpu} --recipe {params.recipe:q} --gram {input}"
        " --out-eigvals {output.eigvals} --out-eigvecs {output.eigvecs} > {log} 2>&1"
