rule trajectories:
    input:
        model=fp_model_files(),
    output:
        "results/calib/trajectories.safetensors",
    log:
        "logs/trajectories.log",
    benchmark:
        "results/benchmarks/trajectories.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("trajectories").threads
    resources:
        **job_resources("trajectories"),
    params:
        model=lambda w, input: folder_of(input.model),
        sampler=shq_json(CFG.sampler),
        cfg=shq_json(CFG.calibration.capture()),
        code=code("trajectories"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli trajectories --model {params.model:q} --sampler {params.sampler} --cfg {params.cfg}'
        ' --out {output:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
