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


# The prompts of a text-to-image model (model.prompts) from MS-COCO captions: n captions of
# COCO's captions annotation file, shuffled with a seed, one per line. The annotation file is
# placed by hand (resources/coco/annotations/captions_val2014.json, from COCO's
# annotations_trainval2014.zip); build the prompts before running a config that names them (its
# check wants model.prompts to exist): snakemake resources/coco/prompts-val2014-seed0-n10000.txt
localrules:
    coco_prompts,


rule coco_prompts:
    input:
        captions="resources/coco/annotations/captions_{split}.json",
    output:
        "resources/coco/prompts-{split}-seed{seed}-n{n}.txt",
    log:
        "logs/coco_prompts/{split}-seed{seed}-n{n}.log",
    benchmark:
        "results/benchmarks/coco_prompts/{split}-seed{seed}-n{n}.tsv"
    wildcard_constraints:
        split="[a-z]+[0-9]*",
        seed="[0-9]+",
        n="[1-9][0-9]*",
    conda:
        "../../envs/diffcomp.yaml"
    threads: 1
    resources:
        **job_resources("dataset"),
    params:
        code=code("coco_prompts"),
    shell:
        '"$DIFFCOMP_PY" -m diffcomp.cli coco-prompts --captions {input.captions:q} --seed {wildcards.seed}'
        " --n {wildcards.n} --out {output:q} 2> {log:q}"
