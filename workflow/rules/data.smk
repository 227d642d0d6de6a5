rule dataset:
    output:
        train="results/data/train.npz",
        test="results/data/test.npz",
        info="results/data/info.json",
    log:
        "logs/dataset.log",
    benchmark:
        "results/benchmarks/dataset.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("dataset"),
    params:
        cfg=shq_json(CFG.dataset),
        code=code("prepare_data"),
    shell:
        "$DIFFCOMP_PY -m diffcomp.cli prepare-data --cfg {params.cfg} --out-dir results/data 2> {log:q}"
