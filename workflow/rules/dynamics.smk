# Teacher fits per (M_TE, replicate), then the exact student loss curve of each
# (M_TE, M_ST, replicate) from the cached eigendecomposition of its student.


rule teacher:
    output:
        f"{RESULTS}/teachers/m{{m_te}}_r{{replicate}}.npz",
    params:
        model=teacher_model_json,
        seed=experiment_value("seed"),
        backend=config["backend"],
        solver=SOLVER_VERSION,
    log:
        f"{RESULTS}/logs/teacher/m{{m_te}}_r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/teacher/m{{m_te}}_r{{replicate}}.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s teacher --model {params.model:q} --backend {params.backend} --seed {params.seed}"
        " --m-te {wildcards.m_te} --replicate {wildcards.replicate} --out {output} > {log} 2>&1"


rule curves:
    input:
        student=cached("draw"),
        eigvals=cached("eigvals"),
        eigvecs=cached("eigvecs"),
        teacher=rules.teacher.output,
    output:
        f"{RESULTS}/curves/m{{m_te}}_s{{m_st}}_r{{replicate}}.parquet",
    params:
        model=teacher_model_json,
        t=experiment_value("t"),
        backend=config["backend"],
        solver=SOLVER_VERSION,
    log:
        f"{RESULTS}/logs/curves/m{{m_te}}_s{{m_st}}_r{{replicate}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/curves/m{{m_te}}_s{{m_st}}_r{{replicate}}.tsv"
    conda:
        "../../envs/rfw2s.yaml"
    shell:
        "python -m rfw2s curves --model {params.model:q} --backend {params.backend}"
        " --student {input.student} --eigvals {input.eigvals} --eigvecs {input.eigvecs}"
        " --teacher {input.teacher} --replicate {wildcards.replicate}"
        " --t-min {params.t[min]} --t-max {params.t[max]} --t-num {params.t[num]}"
        " --out {output} > {log} 2>&1"
