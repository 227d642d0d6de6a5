rule trajectories:
    input:
        model=fp_model_files(),
    output:
        "results/calib/trajectories.safetensors",
    log:
        "logs/trajectories.log",
    benchmark:
        "results/benchmarks/trajectories.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("trajectories").threads
    resources:
        **job_resources("trajectories"),
    params:
        model=lambda w, input: folder_of(input.model),
        sampler=shq_json(CFG.sampler),
        cfg=shq_json(CFG.calibration.capture()),
        code=code("trajectories"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli trajectories --model {params.model:q} --sampler {params.sampler} --cfg {params.cfg}'
        ' --out {output:q} --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'


# Calibration inputs per sampling step of every calibration in use (any method whose parameters
# hold a `calibration`): e.g. Q-Diffusion's uniform steps beside EDA-DM's TDAC.
rule calibration_counts:
    input:
        model=fp_model_files(),
        traj="results/calib/trajectories.safetensors",
    output:
        figure=report(
            "results/figures/calibration_counts.png",
            caption="../report/calibration_counts.rst",
            category=REPORT_CATEGORY["table1"],
            subcategory="Figures",
        ),
        counts="results/calib/counts.json",
    log:
        "logs/calibration_counts.log",
    benchmark:
        "results/benchmarks/calibration_counts.tsv"
    conda:
        "../../envs/diffcomp.yaml"
    threads: res("trajectories").threads
    resources:
        **job_resources("trajectories"),
    params:
        model=lambda w, input: folder_of(input.model),
        calibrations=shlex.quote(json.dumps(calibrations_in_use(), sort_keys=True)),
        code=code("calib_counts", *calibration_modules()),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli calib-counts --model {params.model:q} --trajectories {input.traj:q}'
        " --calibrations {params.calibrations} --figure {output.figure:q} --out {output.counts:q}"
        ' --device "$DIFFCOMP_DEVICE" --threads {threads} 2> {log:q}'
