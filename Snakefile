# rfw2s: weak-to-strong generalization in random feature networks (see README.md).
# Run:  snakemake --cores 1 --resources gpu=1
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/kernel.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/tables.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
