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
include: "workflow/rules/kernel.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/validation.smk"


rule all:
    input:
        all_outputs(EXPERIMENTS),
    default_target: True


# One target per experiment: `snakemake --cores 1 --resources gpu=1 fig2` runs fig2 alone.
_RULE_NAMES = {r.name for r in workflow.rules}
for _name in EXPERIMENTS:
    if _name in _RULE_NAMES:
        raise ValueError(f"config: experiment name {_name!r} is also the name of a workflow rule; "
                         f"rename the experiment (rules: {', '.join(sorted(_RULE_NAMES))})")

    rule:
        name:
            _name
        input:
            all_outputs([_name]),
