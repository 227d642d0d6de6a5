# An ADM reference batch named by URL (evaluation.reference): downloaded (a local rule: it needs
# the internet) and checked against evaluation.reference_sha256, or its sha256 pinned at download.
if CFG.evaluation.reference_url:

    localrules:
        fetch_reference,

    rule fetch_reference:
        output:
            npz=CFG.evaluation.reference_file,
            record=f"{CFG.evaluation.reference_file}.json",
        log:
            "logs/fetch/reference.log",
        benchmark:
            "results/benchmarks/fetch/reference.tsv"
        conda:
            "../../envs/diffcomp.yaml"
        threads: 1
        resources:
            **job_resources("fetch"),
        params:
            url=CFG.evaluation.reference_url,
            checksum=(
                f"--sha256 {CFG.evaluation.reference_sha256}"
                if CFG.evaluation.reference_sha256
                else "--pin"
            ),
        shell:
            '"$DIFFCOMP_PY" -m diffcomp.cli fetch --url {params.url:q} {params.checksum} --out {output.npz:q} 2> {log:q}'


rule reference_stats:
    input:
        images=reference_input(),
        net=feature_net_files(),
    output:
        reference_output(),
    log:
        "logs/reference_stats.log",
    benchmark:
        "results/benchmarks/reference_stats.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("reference").threads
    resources:
        **job_resources("reference"),
    params:
        net=lambda w, input: feature_net_arg(input),
        src=reference_source_args(),
        extractor=CFG.feature_net.name,
        code=code("reference_stats"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli reference-stats {params.src} {input.images:q} --feature-extractor {params.extractor:q}'
        ' {params.net} --out {output:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'


# the CLIP score's inputs, refused at parse time for a model without prompts
CLIP_SCORE = clip_score_files()


rule evaluate:
    input:
        samples="results/samples/{variant}/samples.npz",
        reference=rules.reference_stats.output[0],
        net=feature_net_files(),
        clip=CLIP_SCORE["clip"],
        model=CLIP_SCORE["model"],
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
        **job_resources("evaluate"),
    params:
        net=lambda w, input: feature_net_arg(input),
        extractor=CFG.feature_net.name,
        protocol=lambda w: shlex.quote(protocol(w)),
        clip=lambda w, input: clip_score_args(input),
        code=code("evaluate"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli evaluate --samples {input.samples:q} --reference {input.reference:q}'
        " --feature-extractor {params.extractor:q} {params.net} --variant {wildcards.variant:q}"
        ' --protocol {params.protocol} {params.clip} --out {output:q} --device "$DIFFCOMP_DEVICE" --threads {threads}'
        " 2> {log:q}"
