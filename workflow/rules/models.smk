# The FP model (shipped | trained | downloaded) and the feature network of the offline metrics.
# Each is a folder whose provenance.json records the sha256 of its weights; the rules declare
# and depend on the files (weights, configs, record), not on the folders.


rule train:
    input:
        data="results/data/train.npz",
    output:
        model_outputs("results/models/fp-trained"),
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
        out=lambda w, output: folder_of(output),
        state="results/state/train",
        arch=shq_json(CFG.model.arch),
        cfg=shq_json(CFG.model.train),
        code=code("train"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli train --data {input.data:q} --arch {params.arch} --cfg {params.cfg} --out {params.out:q}'
        ' --state-dir {params.state:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'


rule download:
    input:
        prompts=[CFG.model.prompts] if CFG.model.prompts else [],
    output:
        model_outputs("resources/hub/{owner}/{repo}", *fp_model_parts()),
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
        hub_id=lambda w: f"{w.owner}/{w.repo}",
        out=lambda w, output: folder_of(output),
        revision=lambda w: (
            f"--revision {shlex.quote(CFG.model.revision)}"
            if CFG.model.revision
            else ""
        ),
        prompts=lambda w, input: (
            f"--prompts {shlex.quote(input.prompts[0])}" if input.prompts else ""
        ),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli download --hub-id {params.hub_id:q} {params.revision} {params.prompts}'
        " --out {params.out:q} 2> {log:q}"


# An original DDPM checkpoint (the papers' EMA CIFAR-10 model by default): fetched from its URL
# and checked against its published checksum (a local rule: it needs the internet), then
# converted into a diffusers folder.
rule fetch_checkpoint:
    output:
        ckpt="resources/checkpoints/{ckpt}.ckpt",
        record="resources/checkpoints/{ckpt}.ckpt.json",
    log:
        "logs/fetch/{ckpt}.log",
    benchmark:
        "results/benchmarks/fetch/{ckpt}.tsv"
    wildcard_constraints:
        ckpt=re.escape(CFG.model.checkpoint.name),
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("fetch"),
    params:
        url=CFG.model.checkpoint.url,
        checksum=shlex.join(CFG.model.checkpoint.fetch_args()),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli fetch --url {params.url:q} {params.checksum} --out {output.ckpt:q} 2> {log:q}'


rule convert:
    input:
        ckpt="resources/checkpoints/{ckpt}.ckpt",
        record="resources/checkpoints/{ckpt}.ckpt.json",
    output:
        model_outputs("resources/checkpoints/{ckpt}", *fp_model_parts()),
    log:
        "logs/convert/{ckpt}.log",
    benchmark:
        "results/benchmarks/convert/{ckpt}.tsv"
    wildcard_constraints:
        ckpt=re.escape(CFG.model.checkpoint.name),
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("convert"),
    params:
        out=lambda w, output: folder_of(output),
        args=shlex.join(CFG.model.checkpoint.convert_args()),
        code=code("convert"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli convert --checkpoint {input.ckpt:q} {params.args} --out {params.out:q} 2> {log:q}'


# The metrics' classifier (feature_net.source: train) or RDD's (distillation.feature_net.source:
# train), each with its own recipe.
rule train_classifier:
    input:
        train="results/data/train.npz",
        test="results/data/test.npz",
    output:
        classifier_files("results/models/{net}"),
    log:
        "logs/train_classifier/{net}.log",
    benchmark:
        "results/benchmarks/train_classifier/{net}.tsv"
    wildcard_constraints:
        net="|".join(
            os.path.basename(f) for f in (TRAINED_CLASSIFIER, TRAINED_RDD_CLASSIFIER)
        ),
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("train_classifier").threads
    resources:
        **job_resources("train_classifier"),
    params:
        data=lambda w, input: os.path.dirname(input.train),
        out=lambda w, output: folder_of(output),
        cfg=lambda w, output: shq_json(classifier_recipe(folder_of(output))),
        code=code("train_classifier"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli train-classifier --data-dir {params.data:q} --cfg {params.cfg} --out {params.out:q}'
        ' --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
