# Few-step students: one job per distillation instance and student step count N. Stage N's
# teacher is the chain's 2N-step student, or (first stage) the FP model / another chain's student.
# Jobs depend on the model files (weights, configs, checksum record), not on folders.


rule distill:
    input:
        teacher=distill_teacher_files,
        data="results/data/train.npz",
        features=distill_features_input,
    output:
        model_outputs(student_dir("{name}", "{n}")),
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
        teacher=lambda w, input: folder_of(input.teacher),
        out=lambda w, output: folder_of(output),
        state=lambda w: f"results/state/distill/{w.name}/steps{w.n}",
        method=lambda w: distill_of(w.name).method,
        hparams=lambda w: shlex.quote(distill_of(w.name).params_json()),
        features=distill_features_args,
        clip="--clip-x0" if CFG.distillation.clip_x0 else "--no-clip-x0",
        fast=compute_args(CFG.distillation) + f" --engine {CFG.distillation.engine}",
        code=distill_code,
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli distill --teacher {params.teacher:q} --steps {wildcards.n} --method {params.method:q}'
        " --params {params.hparams} --data {input.data:q} {params.features} {params.clip} {params.fast} --out {params.out:q}"
        ' --state-dir {params.state:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
