rule reference_stats:
    input:
        images=f"results/data/{CFG.evaluation.reference}.npz",
        net=feature_net_dir(),
    output:
        f"results/reference/{CFG.feature_net.name}-{CFG.evaluation.reference}.npz",
    log:
        "logs/reference_stats.log",
    benchmark:
        "results/benchmarks/reference_stats.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("reference").threads
    resources:
        mem_mb=res("reference").mem_mb,
        runtime=lambda wc, attempt: res("reference").runtime * attempt,
    params:
        extractor=CFG.feature_net.name,
        code=code_hash("metrics/*.py", "cli/reference.py"),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli reference-stats --images {input.images} --feature-extractor {params.extractor}"
        " --weights {input.net} --out {output} --device $DIFFCOMP_DEVICE --threads {threads} 2> {log}"


rule evaluate:
    input:
        samples="results/samples/{variant}/samples.npz",
        reference=rules.reference_stats.output[0],
        net=feature_net_dir(),
    output:
        "results/metrics/{variant}.json",
    log:
        "logs/evaluate/{variant}.log",
    benchmark:
        "results/benchmarks/evaluate/{variant}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("evaluate").threads
    resources:
        mem_mb=res("evaluate").mem_mb,
        runtime=lambda wc, attempt: res("evaluate").runtime * attempt,
    params:
        extractor=CFG.feature_net.name,
        protocol=lambda w: shlex.quote(protocol(w)),
        code=code_hash("metrics/*.py", "cli/evaluate.py"),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli evaluate --samples {input.samples} --reference {input.reference}"
        " --feature-extractor {params.extractor} --weights {input.net} --variant {wildcards.variant}"
        " --protocol {params.protocol} --out {output} --device $DIFFCOMP_DEVICE --threads {threads} 2> {log}"
