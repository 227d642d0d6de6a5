# Per-timestep diagnostics of every quantized variant: noise-prediction error, gain and bias
# against the FP model on held-out FP trajectories (never calibrated on), and the shift of its
# samples from the FP model's samples on the same seeds.


rule heldout_trajectories:
    input:
        model=fp_model_files(),
    output:
        "results/calib/heldout.safetensors",
    log:
        "logs/heldout_trajectories.log",
    benchmark:
        "results/benchmarks/heldout_trajectories.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("trajectories").threads
    resources:
        **job_resources("trajectories"),
    params:
        model=lambda w, input: folder_of(input.model),
        sampler=shq_json(CFG.sampler),
        cfg=shq_json(CFG.calibration.capture(heldout=True)),
        code=code("trajectories"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli trajectories --model {params.model:q} --sampler {params.sampler} --cfg {params.cfg}'
        ' --out {output:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'


rule diagnose:
    input:
        model=fp_model_files(),
        quantized=quant_state_path("{name}-w{w}a{a}"),
        heldout="results/calib/heldout.safetensors",
        samples="results/samples/{name}-w{w}a{a}/samples.npz",
        fp_samples="results/samples/fp/samples.npz",
    output:
        "results/metrics/diagnostics/{name}-w{w}a{a}.json",
    log:
        "logs/diagnose/{name}-w{w}a{a}.log",
    benchmark:
        "results/benchmarks/diagnose/{name}-w{w}a{a}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("evaluate").threads
    resources:
        **job_resources("evaluate"),
    params:
        model=lambda w, input: folder_of(input.model),
        code=code("diagnose"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli diagnose --model {params.model:q} --quantized {input.quantized:q}'
        " --heldout {input.heldout:q} --samples {input.samples:q} --fp-samples {input.fp_samples:q}"
        " --variant {wildcards.name}-w{wildcards.w}a{wildcards.a} --out {output:q}"
        ' --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
