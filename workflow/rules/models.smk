# The FP model (shipped | trained | downloaded) and the feature network of the offline metrics.


rule train:
    input:
        data="results/data/train.npz",
    output:
        directory("results/models/fp-trained"),
    log:
        "logs/train.log",
    benchmark:
        "results/benchmarks/train.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("train").threads
    resources:
        **job_resources("train"),
    params:
        arch=shq_json(CFG.model.arch),
        cfg=shq_json(CFG.model.train),
        code=code("train"),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli train --data {input.data:q} --arch {params.arch} --cfg {params.cfg} --out {output:q}"
        " --state-dir results/state/train --device $DIFFCOMP_DEVICE --threads {threads} 2> {log:q}"


rule download:
    output:
        directory("resources/hub/{owner}/{repo}"),
    log:
        "logs/download/{owner}_{repo}.log",
    benchmark:
        "results/benchmarks/download/{owner}_{repo}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("download"),
    params:
        revision=lambda w: (
            f"--revision {shlex.quote(CFG.model.revision)}"
            if CFG.model.revision
            else ""
        ),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli download --hub-id {wildcards.owner}/{wildcards.repo} {params.revision} --out {output:q} 2> {log:q}"


rule train_classifier:
    input:
        train="results/data/train.npz",
        test="results/data/test.npz",
    output:
        directory("results/models/feature-net"),
    log:
        "logs/train_classifier.log",
    benchmark:
        "results/benchmarks/train_classifier.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("train_classifier").threads
    resources:
        **job_resources("train_classifier"),
    params:
        cfg=shq_json(CFG.feature_net.train),
        code=code("train_classifier"),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli train-classifier --data-dir results/data --cfg {params.cfg} --out {output:q}"
        " --device $DIFFCOMP_DEVICE --threads {threads} 2> {log:q}"
