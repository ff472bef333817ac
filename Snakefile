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
        all_outputs(),
    default_target: True
