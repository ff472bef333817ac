# rfw2s: weak-to-strong generalization in random feature networks (see README.md).
# Run:  snakemake --cores 1 --resources gpu=1
import os

from snakemake.utils import min_version

min_version("8.0")


# A config file given on the command line replaces config.yaml rather than extending
# it, so `snakemake --configfile mine.yaml` runs exactly the experiments in mine.yaml.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/kernels.smk"
include: "workflow/rules/curves.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/validation.smk"


rule all:
    default_target: True
    input:
        rfw2s.paths.outputs(PLAN, REPORTED),


# One target per experiment: `snakemake fig2 --cores 1 --resources gpu=1` runs fig2 alone.
_RULE_NAMES = {r.name for r in workflow.rules}
for _name in EXPERIMENTS:
    if _name in _RULE_NAMES:
        raise rfw2s.config.ConfigError(
            f"config: experiment name {_name!r} is also the name of a workflow rule; "
            f"rename the experiment (rules: {', '.join(sorted(_RULE_NAMES))})"
        )

    rule:
        name:
            _name
        input:
            rfw2s.paths.outputs(PLAN, [_name]),


onstart:
    # A cluster run planned for NumPy because the machine that planned it has no GPU: every job,
    # on GPU nodes too, computes on the CPU. Said once, here, where the executor is known.
    if config["backend"] == "auto" and TARGET.backend == "numpy" and not workflow.local_exec:
        logger.warning(
            "backend: auto resolved to NumPy on this machine, which has no usable GPU: every job computes on "
            "the CPU, on GPU nodes too. To compute the GPU rules (kernel, eigh, curves, validation) on the "
            "cluster's GPUs, set backend: cupy and gpu_memory_gb: <GiB of each GPU> (docs/cluster.md)"
        )


onsuccess:
    _targets = sorted(workflow.dag_settings.targets) or []
    logger.info(
        "HTML report of what this run made: snakemake " + " ".join(_targets + ["--report", "results/report.html"])
    )
