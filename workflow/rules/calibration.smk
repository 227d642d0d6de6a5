rule trajectories:
    input:
        model=fp_model_dir(),
    output:
        "results/calib/trajectories.pt",
    log:
        "logs/trajectories.log",
    benchmark:
        "results/benchmarks/trajectories.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("trajectories").threads
    resources:
        mem_mb=res("trajectories").mem_mb,
        runtime=lambda wc, attempt: res("trajectories").runtime * attempt,
        gpu=res("trajectories").gpu,
    params:
        sampler=shq_json(CFG.sampler),
        cfg=shq_json(CFG.calibration),
        code=code_hash(
            "calib/trajectories.py",
            "models/sampler.py",
            "models/pipeline.py",
            "cli/trajectories.py",
        ),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli trajectories --model {input.model} --sampler {params.sampler} --cfg {params.cfg}"
        " --out {output} --device $DIFFCOMP_DEVICE --threads {threads} 2> {log}"
