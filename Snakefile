# diffcomp: diffusion-model compression, from model to paper-style tables.
# The config is validated (schema + semantic checks) here, before any job runs.
import json
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

# This file's folder (not workflow.basedir, which is the outer workflow's when this one is used
# as a Snakemake module).
SRC = Path(workflow.current_basedir) / "src"
sys.path.insert(0, str(SRC))

from diffcomp.config import ConfigError, parse_config, read_yaml, typed_cli_values
from diffcomp.hashing import module_hash
from diffcomp.variant import Variant, export_path, quant_state_path, student_dir

# Snakemake reads a --configfile itself (keeping the last of repeated keys, and reporting a
# syntax error without its line); the default is read below. Read them strictly first, so a
# repeated key or a syntax error is one message naming the file and line.
try:
    for _file in workflow.overwrite_configfiles:
        read_yaml(Path(workflow.basedir) / _file)
    if (
        not workflow.overwrite_configfiles
    ):  # this file's own default (also when used as a module)
        read_yaml(Path(workflow.current_basedir) / "config/default.yaml")
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}")

# A config file is a complete setting: `--configfile X` replaces the embedded default instead
# of being merged into it (Snakemake would otherwise deep-merge X into the default's methods).
if not workflow.overwrite_configfiles:

    configfile: "config/default.yaml"


# Values given inside a mapping on the command line (--config 'evaluation={seed: 100000}') reach
# the config as strings; type them as a config file would (not when this workflow is a module:
# the outer workflow's command line is not this config's).
if Path(workflow.basedir).resolve() == Path(workflow.current_basedir).resolve():
    from snakemake.utils import update_config

    update_config(config, typed_cli_values(workflow.config_settings.config))

try:
    CFG = parse_config(config, base_dir=workflow.basedir)
except ConfigError as err:
    raise WorkflowError(f"invalid config: {err}")

# Every rule runs a diffcomp verb from this checkout's sources: with the conda env's python
# under --software-deployment-method conda, else with the python running Snakemake.
from snakemake.settings.types import DeploymentMethod

# The interpreter, source path and device reach the jobs through the shell prefix (applied again
# by every Snakemake process that parses this file, e.g. a SLURM job step), not through params,
# so moving the checkout or the virtual environment triggers no rerun.
_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
_py = "python" if _conda else sys.executable
shell.prefix(
    f"export DIFFCOMP_PY={shlex.quote(_py)} PYTHONPATH={shlex.quote(str(SRC))}:$PYTHONPATH"
    f" DIFFCOMP_DEVICE={shlex.quote(CFG.device)}; "
)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/quantize.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/diagnose.smk"
include: "workflow/rules/report.smk"


# Light jobs and the download (it needs the internet, usually only on a login node) run on the
# machine that runs Snakemake, never through a cluster executor.
localrules:
    all,
    download,
    fetch_checkpoint,
    gather,
    table1,
    table2,
    table3,
    samples_figure,
    job_times,
    run_info,


# The tables, the report's pages, and every variant's metrics and grid: a lost one is rebuilt by a
# plain rerun.
rule all:
    default_target: True
    input:
        expand("results/{table}.csv", table=tables()),
        report_targets(),
        per_variant_outputs(),
