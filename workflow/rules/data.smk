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
        out=lambda w, output: os.path.dirname(output.train),
        cfg=shq_json(CFG.dataset),
        code=code("prepare_data"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli prepare-data --cfg {params.cfg} --out-dir {params.out:q} 2> {log:q}'
