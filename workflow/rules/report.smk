# Paper-style tables and the report's figures and pages (snakemake --report).


rule table1:
    input:
        metrics=expand("results/metrics/{variant}.json", variant=CFG.variants("table1")),
        diagnostics=expand(
            "results/metrics/diagnostics/{variant}.json",
            variant=CFG.variants("table1")[1:],
        ),
        paper=[CFG.paper.numbers] if CFG.paper else [],
    output:
        csv="results/table1.csv",
        md="results/table1.md",
        tex="results/table1.tex",
        html=report(
            "results/table1.html",
            caption="../report/table1.rst",
            category=REPORT_CATEGORY["table1"],
            subcategory="Table",
        ),
        figure=report(
            "results/figures/fid_vs_bits.png",
            caption="../report/fid_vs_bits.rst",
            category=REPORT_CATEGORY["table1"],
            subcategory="Figures",
        ),
        diag_csv="results/table1_diagnostics.csv",
        diag_md="results/table1_diagnostics.md",
        diag_tex="results/table1_diagnostics.tex",
        diag_figure=report(
            "results/figures/eps_vs_timestep.png",
            caption="../report/eps_vs_timestep.rst",
            category=REPORT_CATEGORY["table1"],
            subcategory="Figures",
        ),
    log:
        "logs/table1.log",
    benchmark:
        "results/benchmarks/table1.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("table"),
    params:
        methods=shlex.quote(
            json.dumps([[m.name, m.label] for m in table_methods("table1")])
        ),
        bits=shlex.quote(json.dumps(table1_bits())),
        paper=lambda w, input: (
            f"--paper-numbers {shlex.quote(input.paper[0])} --paper-setting {shlex.quote(CFG.paper.setting)}"
            if input.paper
            else ""
        ),
        code=code("table1"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli table1 --metrics {input.metrics:q} --methods {params.methods} --bits {params.bits}'
        " --out-stem results/table1 --html {output.html:q} --figure {output.figure:q}"
        " --diagnostics {input.diagnostics:q} --diagnostics-stem results/table1_diagnostics"
        " --diagnostics-figure {output.diag_figure:q} {params.paper} 2> {log:q}"


rule table2:
    input:
        metrics=expand("results/metrics/{variant}.json", variant=CFG.variants("table2")),
        diagnostics=expand(
            "results/metrics/diagnostics/{variant}.json",
            variant=CFG.variants("table2")[1:],
        ),
        models=table2_models(),
    output:
        csv="results/table2.csv",
        md="results/table2.md",
        tex="results/table2.tex",
        html=report(
            "results/table2.html",
            caption="../report/table2.rst",
            category=REPORT_CATEGORY["table2"],
            subcategory="Table",
        ),
        figure=report(
            "results/figures/fid_vs_bits_table2.png",
            caption="../report/fid_vs_bits.rst",
            category=REPORT_CATEGORY["table2"],
            subcategory="Figures",
        ),
        diag_csv="results/table2_diagnostics.csv",
        diag_md="results/table2_diagnostics.md",
        diag_tex="results/table2_diagnostics.tex",
        diag_figure=report(
            "results/figures/eps_vs_timestep_table2.png",
            caption="../report/eps_vs_timestep.rst",
            category=REPORT_CATEGORY["table2"],
            subcategory="Figures",
        ),
        bits_figure=report(
            "results/figures/channel_bits.png",
            caption="../report/channel_bits.rst",
            category=REPORT_CATEGORY["table2"],
            subcategory="Figures",
        ),
    log:
        "logs/table2.log",
    benchmark:
        "results/benchmarks/table2.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("table"),
    params:
        methods=shlex.quote(
            json.dumps([[m.name, m.label] for m in table_methods("table2")])
        ),
        bits=shlex.quote(json.dumps(table1_bits("table2"))),
        code=code("table2"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli table2 --metrics {input.metrics:q} --methods {params.methods} --bits {params.bits}'
        " --out-stem results/table2 --html {output.html:q} --figure {output.figure:q}"
        " --diagnostics {input.diagnostics:q} --diagnostics-stem results/table2_diagnostics"
        " --diagnostics-figure {output.diag_figure:q} --models {input.models:q}"
        " --bits-figure {output.bits_figure:q} 2> {log:q}"


rule table3:
    input:
        metrics=expand("results/metrics/{variant}.json", variant=CFG.distill_variants()),
        students=[f"{d}/provenance.json" for d in students().values()],
    output:
        csv="results/table3.csv",
        md="results/table3.md",
        tex="results/table3.tex",
        html=report(
            "results/table3.html",
            caption="../report/table3.rst",
            category=REPORT_CATEGORY["table3"],
            subcategory="Table",
        ),
        figure=report(
            "results/figures/fid_vs_steps.png",
            caption="../report/fid_vs_steps.rst",
            category=REPORT_CATEGORY["table3"],
            subcategory="Figures",
        ),
    log:
        "logs/table3.log",
    benchmark:
        "results/benchmarks/table3.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("table"),
    params:
        rows=shlex.quote(
            json.dumps([[m.name, m.label] for m in CFG.distillation.methods])
        ),
        steps=shlex.quote(json.dumps(table3_steps())),
        students=shlex.quote(json.dumps(students())),
        teachers=shlex.quote(json.dumps(CFG.distill_teachers())),
        code=code("table3"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli table3 --metrics {input.metrics:q} --students {params.students}'
        " --rows {params.rows} --steps {params.steps} --teachers {params.teachers}"
        " --out-stem results/table3 --html {output.html:q}"
        " --figure {output.figure:q} 2> {log:q}"


rule samples_figure:
    input:
        sample_figure_input,
    output:
        report(
            "results/figures/samples_{table}.png",
            caption="../report/samples.rst",
            category=lambda w: REPORT_CATEGORY[w.table],
            subcategory="Figures",
        ),
    log:
        "logs/samples_figure_{table}.log",
    benchmark:
        "results/benchmarks/samples_figure/{table}.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("table"),
    params:
        labels=lambda w: shlex.quote(
            json.dumps([lab for _, lab in sample_rows(w.table)])
        ),
        code=code("samples_figure"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli samples-figure --samples {input:q} --labels {params.labels} --n 8'
        " --out {output:q} 2> {log:q}"


rule job_times:
    input:
        expand("results/{table}.csv", table=tables()),
    output:
        report(
            "results/figures/job_times.png",
            caption="../report/job_times.rst",
            category=REPORT_CATEGORY["run"],
        ),
    log:
        "logs/job_times.log",
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("table"),
    params:
        code=code("job_times"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli job-times --benchmarks results/benchmarks --out {output:q} 2> {log:q}'


rule run_info:
    output:
        report(
            "results/report/run_info.html",
            caption="../report/run_info.rst",
            category=REPORT_CATEGORY["run"],
        ),
    log:
        "logs/run_info.log",
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("table"),
    params:
        config=shlex.quote(json.dumps(config, sort_keys=True)),
        source=code_hash("**/*.py", "config.schema.json"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli run-info --config {params.config} --source-hash {params.source}'
        " --out {output:q} 2> {log:q}"
