# One job per method instance and bit setting. A method plugs in through its registry
# (diffcomp.methods.METHODS); this rule never changes for a new method. Methods that train
# (QAT) keep resume state under results/state/quantize/ (undeclared, so a killed job keeps it).


rule quantize:
    input:
        model=fp_model_files(),
        traj="results/calib/trajectories.safetensors",
    output:
        quant_state_path("{name}-w{w}a{a}"),
    log:
        "logs/quantize/{name}-w{w}a{a}.log",
    benchmark:
        "results/benchmarks/quantize/{name}-w{w}a{a}.tsv"
    wildcard_constraints:
        name=instances(corrected=False),
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("quantize").threads
    resources:
        **job_resources("quantize"),
    params:
        model=lambda w, input: folder_of(input.model),
        method=lambda w: method_of(w.name).method,
        hparams=lambda w: shlex.quote(method_of(w.name).params_json()),
        state=lambda w: f"results/state/quantize/{w.name}-w{w.w}a{w.a}",
        code=quant_code,
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli quantize --model {params.model:q} --trajectories {input.traj:q}'
        " --method {params.method:q} --bits w{wildcards.w}a{wildcards.a} --params {params.hparams} --out {output:q}"
        ' --state-dir {params.state:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'


# A packed integer checkpoint of a quantized variant, usable without the workflow
# (diffcomp.load_quantized); not part of the default target.
rule export:
    input:
        model=fp_model_files(),
        quantized=quant_state_path("{name}-w{w}a{a}"),
    output:
        model=export_path("{name}-w{w}a{a}"),
        sizes="results/export/{name}-w{w}a{a}.json",
    log:
        "logs/export/{name}-w{w}a{a}.log",
    benchmark:
        "results/benchmarks/export/{name}-w{w}a{a}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("export"),
    params:
        model=lambda w, input: folder_of(input.model),
        code=code("export"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli export --model {params.model:q} --quantized {input.quantized:q}'
        " --out {output.model:q} --sizes {output.sizes:q} 2> {log:q}"


# An instance with a base: the base instance's quantized model with post-quantization
# corrections (bias correction, eps correction) fitted on the calibration trajectories.
rule correct:
    input:
        model=fp_model_files(),
        quantized=lambda w: quant_state_path(f"{method_of(w.name).base}-w{w.w}a{w.a}"),
        traj="results/calib/trajectories.safetensors",
    output:
        quant_state_path("{name}-w{w}a{a}"),
    log:
        "logs/correct/{name}-w{w}a{a}.log",
    benchmark:
        "results/benchmarks/correct/{name}-w{w}a{a}.tsv"
    wildcard_constraints:
        name=instances(corrected=True),
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("quantize").threads
    resources:
        **job_resources("quantize"),
    params:
        model=lambda w, input: folder_of(input.model),
        fixes=lambda w: correction_args(method_of(w.name)),
        code=code("correct"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli correct --model {params.model:q} --quantized {input.quantized:q}'
        " --trajectories {input.traj:q} {params.fixes} --out {output:q}"
        ' --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
