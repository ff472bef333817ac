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
        PLAN.outputs(),


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
            PLAN.outputs([_name]),


onsuccess:
    _targets = sorted(workflow.dag_settings.targets) or []
    logger.info(
        "HTML report of what this run made: snakemake " + " ".join(_targets + ["--report", "results/report.html"])
    )
