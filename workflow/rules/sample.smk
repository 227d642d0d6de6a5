# Each variant's samples in shards of evaluation.shard_size images (seed = base seed + index),
# each shard its own job, then one gather job.


rule sample_shard:
    input:
        model=variant_model_files,
        quantized=quantized_input,
    output:
        "results/samples/{variant}/shard-{i}.npz",
    log:
        "logs/sample/{variant}/shard-{i}.log",
    benchmark:
        "results/benchmarks/sample/{variant}/shard-{i}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("sample").threads
    resources:
        **job_resources("sample"),
    params:
        model=lambda w, input: folder_of(input.model),
        state=lambda w: f"results/state/samples/{w.variant}/shard-{w.i}",
        sampler=lambda w: shq_json(variant_sampler(w.variant)),
        start=lambda w: shard_range(int(w.i))[0],
        end=lambda w: shard_range(int(w.i))[1],
        seed=CFG.evaluation.seed,
        batch=(
            f"--batch-size {CFG.evaluation.batch_size}"
            if CFG.evaluation.batch_size
            else ""
        ),
        fast=compute_args(CFG.evaluation),
        quantized=lambda w, input: (
            f"--quantized {shlex.quote(input.quantized[0])}" if input.quantized else ""
        ),
        code=sample_code,
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli sample --model {params.model:q} {params.quantized} --sampler {params.sampler}'
        " --start {params.start} --end {params.end} --seed {params.seed} {params.batch} {params.fast}"
        ' --out {output:q} --state-dir {params.state:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'


rule gather:
    input:
        expand("results/samples/{{variant}}/shard-{i}.npz", i=range(CFG.n_shards())),
    output:
        samples="results/samples/{variant}/samples.npz",
        grid=report(
            "results/grids/{variant}.png",
            caption="../report/grid.rst",
            category=variant_category,
            subcategory="Sample grids",
            labels={"variant": "{variant}"},
        ),
    log:
        "logs/gather/{variant}.log",
    benchmark:
        "results/benchmarks/gather/{variant}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("gather"),
    params:
        code=code("gather"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli gather --shards {input:q} --out {output.samples:q} --grid {output.grid:q} 2> {log:q}'
