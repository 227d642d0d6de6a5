# Few-step students: one job per distillation instance and student step count N. Stage N's
# teacher is the chain's 2N-step student, or (first stage) the FP model / another chain's student.


rule distill:
    input:
        teacher=distill_teacher,
        data="results/data/train.npz",
        features=distill_features_input,
    output:
        directory(student_dir("{name}", "{n}")),
    log:
        "logs/distill/{name}/steps{n}.log",
    benchmark:
        "results/benchmarks/distill/{name}/steps{n}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("distill").threads
    resources:
        **job_resources("distill"),
    params:
        method=lambda w: distill_of(w.name).method,
        hparams=lambda w: shlex.quote(distill_of(w.name).params_json()),
        features=lambda w, input: (
            f"--feature-net {shlex.quote(input.features[0])} --feature-net-name {distill_feature_net()[0]}"
            if input.features
            else ""
        ),
        code=distill_code,
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli distill --teacher {input.teacher:q} --steps {wildcards.n} --method {params.method}"
        " --params {params.hparams} --data {input.data:q} {params.features} --out {output:q}"
        " --state-dir results/state/distill/{wildcards.name}/steps{wildcards.n}"
        " --device $DIFFCOMP_DEVICE --threads {threads} 2> {log:q}"
