# The FP model (shipped | trained | downloaded) and the feature network of the offline metrics.


rule train:
    input:
        data="results/data/train.npz",
    output:
        directory("results/models/fp-trained"),
    params:
        arch=shq_json(CFG.model.arch),
        cfg=shq_json(CFG.model.train),
        code=code_hash("models/*.py", "cli/train.py"),
    log:
        "logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    threads: res("train").threads
    resources:
        mem_mb=res("train").mem_mb,
        runtime=lambda wc, attempt: res("train").runtime * attempt,
        gpu=res("train").gpu,
    conda:
        "../../" + ENV
    shell:
        "{DIFFCOMP} train --data {input.data} --arch {params.arch} --cfg {params.cfg} --out {output}"
        " --state-dir results/state/train --device {CFG.device} --threads {threads} 2> {log}"


rule download:
    output:
        directory("resources/hub/{owner}/{repo}"),
    params:
        revision=lambda w: f"--revision {CFG.model.revision}" if CFG.model.revision else "",
    log:
        "logs/download/{owner}_{repo}.log",
    benchmark:
        "results/benchmarks/download/{owner}_{repo}.tsv"
    threads: 1
    resources:
        mem_mb=res("download").mem_mb,
        runtime=lambda wc, attempt: res("download").runtime * attempt,
    conda:
        "../../" + ENV
    shell:
        "{DIFFCOMP} download --hub-id {wildcards.owner}/{wildcards.repo} {params.revision} --out {output} 2> {log}"


rule train_classifier:
    input:
        train="results/data/train.npz",
        test="results/data/test.npz",
    output:
        directory("results/models/feature-net"),
    params:
        cfg=shq_json(CFG.feature_net.train),
        code=code_hash("metrics/classifier.py", "cli/train_classifier.py"),
    log:
        "logs/train_classifier.log",
    benchmark:
        "results/benchmarks/train_classifier.tsv"
    threads: res("train_classifier").threads
    resources:
        mem_mb=res("train_classifier").mem_mb,
        runtime=lambda wc, attempt: res("train_classifier").runtime * attempt,
        gpu=res("train_classifier").gpu,
    conda:
        "../../" + ENV
    shell:
        "{DIFFCOMP} train-classifier --data-dir results/data --cfg {params.cfg} --out {output}"
        " --device {CFG.device} --threads {threads} 2> {log}"
