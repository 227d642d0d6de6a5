rule table1:
    input:
        expand("results/metrics/{variant}.json", variant=CFG.variants()),
    output:
        csv="results/table1.csv",
        md="results/table1.md",
        tex="results/table1.tex",
        figure="results/figures/fid_vs_bits.png",
    log:
        "logs/table1.log",
    benchmark:
        "results/benchmarks/table1.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        mem_mb=res("table").mem_mb,
        runtime=lambda wc, attempt: res("table").runtime * attempt,
    params:
        methods=shlex.quote(
            json.dumps([[m.name, m.label] for m in CFG.quantization.methods])
        ),
        bits=shlex.quote(json.dumps(table1_bits())),
        code=code("table1"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli table1 --metrics {input:q} --methods {params.methods} --bits {params.bits}'
        " --out-stem results/table1 --figure {output.figure:q} 2> {log:q}"


rule table3:
    input:
        metrics=expand("results/metrics/{variant}.json", variant=CFG.distill_variants()),
        students=[f"{d}/provenance.json" for d in students().values()],
    output:
        csv="results/table3.csv",
        md="results/table3.md",
        tex="results/table3.tex",
        figure="results/figures/fid_vs_steps.png",
    log:
        "logs/table3.log",
    benchmark:
        "results/benchmarks/table3.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        mem_mb=res("table").mem_mb,
        runtime=lambda wc, attempt: res("table").runtime * attempt,
    params:
        rows=shlex.quote(
            json.dumps([[m.name, m.label] for m in CFG.distillation.methods])
        ),
        steps=shlex.quote(json.dumps(table3_steps())),
        students=shlex.quote(json.dumps(students())),
        code=code("table3"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli table3 --metrics {input.metrics:q} --students {params.students}'
        " --rows {params.rows} --steps {params.steps} --out-stem results/table3 --figure {output.figure:q} 2> {log:q}"
