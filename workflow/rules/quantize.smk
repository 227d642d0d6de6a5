# One job per method instance and bit setting. A method plugs in through the registry
# (diffcomp.methods.METHODS); this rule never changes for a new method.
from diffcomp.methods import METHODS


def quant_code(w):
    m = method_of(w.name)
    return code_hash("quant/*.py", "calib/*.py", "methods/__init__.py", "methods/params.py",
                     METHODS[m.method].source, "cli/quantize.py")  # fmt: skip


rule quantize:
    input:
        model=fp_model_dir(),
        traj="results/calib/trajectories.pt",
    output:
        "results/quant/{name}-w{w}a{a}.pt",
    params:
        method=lambda w: method_of(w.name).method,
        hparams=lambda w: shlex.quote(method_of(w.name).params_json()),
        code=quant_code,
    log:
        "logs/quantize/{name}-w{w}a{a}.log",
    benchmark:
        "results/benchmarks/quantize/{name}-w{w}a{a}.tsv"
    threads: res("quantize").threads
    resources:
        mem_mb=res("quantize").mem_mb,
        runtime=lambda wc, attempt: res("quantize").runtime * attempt,
        gpu=res("quantize").gpu,
    conda:
        "../../" + ENV
    shell:
        "{DIFFCOMP} quantize --model {input.model} --trajectories {input.traj} --method {params.method}"
        " --bits w{wildcards.w}a{wildcards.a} --params {params.hparams} --out {output}"
        " --device {CFG.device} --threads {threads} 2> {log}"
