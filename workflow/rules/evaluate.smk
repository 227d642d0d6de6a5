rule reference_stats:
    input:
        images=f"results/data/{CFG.evaluation.reference}.npz",
        net=feature_net_dir(),
    output:
        f"results/reference/{CFG.feature_net.name}-{CFG.evaluation.reference}.npz",
    params:
        code=code_hash("metrics/*.py", "cli/reference.py"),
    log:
        "logs/reference_stats.log",
    benchmark:
        "results/benchmarks/reference_stats.tsv"
    threads: res("reference").threads
    resources:
        mem_mb=res("reference").mem_mb,
        runtime=lambda wc, attempt: res("reference").runtime * attempt,
    conda:
        "../../" + ENV
    shell:
        "{DIFFCOMP} reference-stats --images {input.images} --feature-extractor {CFG.feature_net.name}"
        " --weights {input.net} --out {output} --device {CFG.device} --threads {threads} 2> {log}"


def protocol(w):
    return json.dumps({"sampler": dataclasses.asdict(CFG.sampler), "seed": CFG.evaluation.seed,
                       "reference": CFG.evaluation.reference, "dataset": CFG.dataset.name,
                       "config": CFG.name}, sort_keys=True)  # fmt: skip


rule evaluate:
    input:
        samples="results/samples/{variant}/samples.npz",
        reference=rules.reference_stats.output[0],
        net=feature_net_dir(),
    output:
        "results/metrics/{variant}.json",
    params:
        protocol=lambda w: shlex.quote(protocol(w)),
        code=code_hash("metrics/*.py", "cli/evaluate.py"),
    log:
        "logs/evaluate/{variant}.log",
    benchmark:
        "results/benchmarks/evaluate/{variant}.tsv"
    threads: res("evaluate").threads
    resources:
        mem_mb=res("evaluate").mem_mb,
        runtime=lambda wc, attempt: res("evaluate").runtime * attempt,
    conda:
        "../../" + ENV
    shell:
        "{DIFFCOMP} evaluate --samples {input.samples} --reference {input.reference}"
        " --feature-extractor {CFG.feature_net.name} --weights {input.net} --variant {wildcards.variant}"
        " --protocol {params.protocol} --out {output} --device {CFG.device} --threads {threads} 2> {log}"
