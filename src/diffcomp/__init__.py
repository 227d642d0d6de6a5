"""diffcomp: reproduce diffusion-model compression papers in one Snakemake DAG."""

__version__ = "0.1.0"
