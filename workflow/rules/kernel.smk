# Cached feature-kernel matrix of a student draw -> its eigendecomposition, shared by
# every experiment whose draws are the same (results/cache/<student>/, the student named
# by model, width and seed). No job writes the draws: each job that needs one draws it
# from its seed, which costs less than a job's start-up. The dense steps hold the `gpu` resource, so they run one at
# a time and may use every CPU core for BLAS/LAPACK (--blas-threads all).


rule kernel:
    output:
        f"{CACHE}/gram_r{{replicate}}.npy",
    params:
        model=student_model_json,
        seed=student_value("seed"),
        m_st=student_value("m_st"),
        backend=config["backend"],
    resources:
        gpu=1,
        mem_mb=job_memory_mb("kernel"),
        runtime=job_runtime_min("kernel"),
    log:
        f"{CACHE}/logs/kernel_r{{replicate}}.log",
    benchmark:
        f"{CACHE}/benchmarks/kernel_r{{replicate}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s --blas-threads all kernel --model {params.model:q} --backend {params.backend}"
        " --seed {params.seed} --m-st {params.m_st} --replicate {wildcards.replicate} --out {output} > {log} 2>&1"


rule eigh:
    input:
        rules.kernel.output,
    output:
        eigvals=f"{CACHE}/eigvals_r{{replicate}}.npy",
        eigvecs=f"{CACHE}/eigvecs_r{{replicate}}.npy",
    params:
        backend=config["backend"],
        solver=EIGH_VERSION,
    resources:
        gpu=1,
        mem_mb=job_memory_mb("eigh"),
        runtime=job_runtime_min("eigh"),
    log:
        f"{CACHE}/logs/eigh_r{{replicate}}.log",
    benchmark:
        f"{CACHE}/benchmarks/eigh_r{{replicate}}.tsv"
    conda:
        CONDA_ENV
    shell:
        "python3 -m rfw2s --blas-threads all eigh --backend {params.backend} --gram {input}"
        " --out-eigvals {output.eigvals} --out-eigvecs {output.eigvecs} > {log} 2>&1"
