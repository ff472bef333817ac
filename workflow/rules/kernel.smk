# Student draws -> cached feature-kernel matrix -> its eigendecomposition.
# The dense steps hold the `gpu` resource, so they run one at a time and may use every
# CPU core for BLAS/LAPACK when no GPU is usable (--blas-threads all).


rule draw_student:
    output:
        f"{RESULTS}/draws/student_r{{replicate}}.npy",
    params:
        model=model_json,
        seed=experiment_value("seed"),
        m_st=experiment_value("m_st"),
    log:
        f"{RESULTS}/logs/draw_student/r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/draw_student/r{{replicate}}.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s draw --model {params.model:q} --role student --seed {params.seed}"
        " --size {params.m_st} --replicate {wildcards.replicate} --out {output} > {log} 2>&1"


rule kernel:
    input:
        rules.draw_student.output,
    output:
        f"{RESULTS}/kernel/r{{replicate}}_gram.npy",
    params:
        model=model_json,
        backend=config["backend"],
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/kernel/r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/kernel/r{{replicate}}.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s --blas-threads all kernel --model {params.model:q} --backend {params.backend}"
        " --draw {input} --out {output} > {log} 2>&1"


rule eigh:
    input:
        rules.kernel.output,
    output:
        eigvals=f"{RESULTS}/kernel/r{{replicate}}_eigvals.npy",
        eigvecs=f"{RESULTS}/kernel/r{{replicate}}_eigvecs.npy",
    params:
        backend=config["backend"],
        solver=SOLVER_VERSION,
    resources:
        gpu=1,
    log:
        f"{RESULTS}/logs/eigh/r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eigh/r{{replicate}}.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s --blas-threads all eigh --backend {params.backend} --gram {input}"
        " --out-eigvals {output.eigvals} --out-eigvecs {output.eigvecs} > {log} 2>&1"
