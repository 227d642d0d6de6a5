# One job per method instance and bit setting. A method plugs in through its registry
# (diffcomp.methods.METHODS); this rule never changes for a new method.


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
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("quantize").threads
    resources:
        mem_mb=res("quantize").mem_mb,
        runtime=lambda wc, attempt: res("quantize").runtime * attempt,
        gpu=res("quantize").gpu,
    params:
        model=lambda w, input: folder_of(input.model),
        method=lambda w: method_of(w.name).method,
        hparams=lambda w: shlex.quote(method_of(w.name).params_json()),
        code=quant_code,
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli quantize --model {params.model:q} --trajectories {input.traj:q}'
        " --method {params.method:q} --bits w{wildcards.w}a{wildcards.a} --params {params.hparams} --out {output:q}"
        ' --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
