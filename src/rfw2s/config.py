"""The config: its schema (composed with each model's parameters and the library's numerical
defaults), its validation, and what its keys mean (the concrete model per teacher, the
student widths, the learning rule). The jobs it asks for are planned in :mod:`rfw2s.plan`.

Every default is written once: pipeline choices in the schema file
(``workflow/schemas/config.schema.yaml``), numerical settings beside the code that uses them
(:data:`rfw2s.krylov.LANCZOS_DEFAULTS`, :data:`rfw2s.sample.DEFAULT_STEP_FRACTION`), from
where :func:`compose_schema` copies them into the schema the config is validated against.
"""
from __future__ import annotations

import copy
import math
import re

from . import models

# Keys every experiment may have; all others are the model's own parameters.
COMMON_KEYS = ("model", "m_st", "m_te", "replicates", "seed", "t", "validation", "gpu_only", "degrees", "rule",
               "samples", "teacher_samples", "split", "show")
# A YAML 1.1 float without a sign in its exponent (1.0e2), which PyYAML leaves a string.
_EXPONENT_LITERAL = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE]\d+$")


class ConfigError(ValueError):
    pass


def normalize(config: dict) -> dict:
    """Read YAML 1.1 exponent literals without a sign (``1.0e2``, which PyYAML leaves as
    strings) as numbers, wherever they are; anything else is left for the schema to judge."""

    def visit(node):
        if isinstance(node, dict):
            for key, value in node.items():
                node[key] = visit(value)
        elif isinstance(node, list):
            node[:] = [visit(v) for v in node]
        elif isinstance(node, str) and _EXPONENT_LITERAL.match(node):
            return float(node)
        return node

    visit(config)
    return config


def non_finite_numbers(config: dict) -> list[str]:
    """``key: value`` of every NaN or infinite number in the config (JSON schema's bounds do
    not catch NaN: every comparison with it is false)."""
    found = []

    def visit(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                visit(value, f"{path}.{key}" if path else str(key))
        elif isinstance(node, list):
            for i, value in enumerate(node):
                visit(value, f"{path}[{i}]")
        elif isinstance(node, float) and not math.isfinite(node):
            found.append(f"{path}: must be a finite number; got {node}")

    visit(config, "")
    return found


def compose_schema(base: dict) -> dict:
    """The config schema with every registered model's parameters and the library's numerical
    defaults: ``model`` must name a registered model, and an experiment may carry only that
    model's parameters (typed by the model's own ``PARAMETERS``)."""
    from .krylov import LANCZOS_DEFAULTS
    from .sample import DEFAULT_STEP_FRACTION

    schema = copy.deepcopy(base)
    for key, value in LANCZOS_DEFAULTS.items():
        schema["properties"]["lanczos"]["properties"][key]["default"] = value
    experiment = schema["properties"]["experiments"]["additionalProperties"]
    sampled = experiment["properties"]["validation"]["properties"]["sampled"]["properties"]
    sampled["step_fraction"]["default"] = DEFAULT_STEP_FRACTION
    experiment["properties"]["model"]["enum"] = sorted(models.REGISTRY)
    rules = []
    for name, module in sorted(models.REGISTRY.items()):
        for param in module.PARAMETERS:
            experiment["properties"].setdefault(param, {})
        accepted = list(COMMON_KEYS) + list(module.PARAMETERS)
        rules.append({
            "if": {"properties": {"model": {"const": name}}, "required": ["model"]},
            "then": {"properties": module.PARAMETERS, "required": list(module.REQUIRED),
                     "propertyNames": {"enum": accepted}},
        })
    experiment["allOf"] = rules
    return schema


def _validator_filling_defaults(schema: dict):
    """A JSON-schema validator that also writes each absent property's ``default`` into the
    instance (a copy of it), as Snakemake's ``validate(..., set_default=True)`` does."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    check_properties = base.VALIDATORS["properties"]

    def properties(validator, props, instance, subschema):
        if isinstance(instance, dict):
            for key, sub in props.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, subschema)

    return jsonschema.validators.extend(base, {"properties": properties})(schema)


def _message(error) -> str:
    """jsonschema's message, with the bound where it leaves it out (too many items)."""
    if error.validator in ("maxItems", "maxProperties"):
        return f"{len(error.instance)} entries, more than the maximum of {error.validator_value}"
    return error.message


def _resolve(schema, root: dict):
    """A local ``$ref`` ("#/$defs/name") followed to its schema; anything else as it is."""
    for _ in range(16):  # no chain of references is longer; a cycle stops here
        if not (isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and schema["$ref"].startswith("#/")):
            return schema
        node = root
        for part in schema["$ref"][2:].split("/"):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        schema = node
    return schema


def _tag(schema: dict):
    """The property a form is told apart by, and its constant (a rule's name, a target's kind)."""
    for key, sub in schema.get("properties", {}).items():
        if isinstance(sub, dict) and "const" in sub:
            return key, sub["const"]
    return None


def _describe(schema, root: dict, depth: int = 0) -> str:
    """A short reading of one allowed form, for a value that matches none."""
    schema = _resolve(schema, root)
    if not isinstance(schema, dict) or depth > 4:
        return "any value" if schema is True else "another form"
    tag = _tag(schema)
    if tag is not None:  # a form told apart by a constant: {name: ridge, mu: ...}
        others = [k for k in schema.get("required", []) if k != tag[0]]
        either = [o["required"][0] for o in schema.get("oneOf", []) if isinstance(o, dict) and o.get("required")]
        return ("{" + f"{tag[0]}: {tag[1]}" + "".join(f", {k}: ..." for k in others)
                + (f", {' or '.join(either)}: ..." if either else "") + "}")
    if "enum" in schema:
        return ", ".join(str(v) for v in schema["enum"])
    if "const" in schema:
        return repr(schema["const"])
    if "oneOf" in schema or "anyOf" in schema:
        return "; ".join(_describe(s, root, depth + 1) for s in schema.get("oneOf", schema.get("anyOf")))
    if schema.get("type") == "array":
        return f"a list of ({_describe(schema['items'], root, depth + 1)})" if "items" in schema else "a list"
    if schema.get("type") == "object":
        return "{" + ", ".join(f"{k}: ..." for k in schema.get("properties", {})) + "}"
    if schema.get("type") in ("integer", "number"):
        bounds = [f"from {schema['minimum']}" if "minimum" in schema else "",
                  f"above {schema['exclusiveMinimum']}" if "exclusiveMinimum" in schema else "",
                  f"to {schema['maximum']}" if "maximum" in schema else "",
                  f"below {schema['exclusiveMaximum']}" if "exclusiveMaximum" in schema else ""]
        return " ".join(["an integer" if schema["type"] == "integer" else "a number"] + [b for b in bounds if b])
    return str(schema.get("type", "another form"))


def _excluded(errors) -> bool:
    """Whether a oneOf branch's errors say the value is not of that branch's kind at all (its
    type, its constant, or the constant it is told apart by), rather than a wrong detail."""
    for e in errors:
        path = list(e.relative_path)
        if (not path and e.validator in ("type", "enum", "const")) or (len(path) == 1 and e.validator == "const"):
            return True
        if not path and e.validator in ("oneOf", "anyOf") and e.context and not _kind_branches(e):
            return True
    return False


def _kind_branches(error) -> list:
    """The errors of each branch of a failed oneOf/anyOf that the value is of the kind of."""
    branches: dict = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    return [errors for _, errors in sorted(branches.items()) if not _excluded(errors)]


def _explained(error, root: dict, as_written) -> list[tuple[str, str]]:
    """(key, message) for a schema error; a value matching none of a oneOf's forms gets the
    problem of the form it is of (a ridge rule's negative ``mu``), or the forms allowed.
    ``as_written(path)`` is the value as the config gave it (the validator fills defaults in)."""
    where = ".".join(str(p) for p in error.absolute_path) or "config"
    if error.validator in ("oneOf", "anyOf"):
        options = error.validator_value
        if all(isinstance(o, dict) and set(o) == {"required"} and len(o["required"]) == 1 for o in options):
            keys = ", ".join(o["required"][0] for o in options)
            return [(where, f"give {'exactly' if error.validator == 'oneOf' else 'at least'} one of {keys}")]
        value = as_written(error.absolute_path)
        if not error.context:  # valid under several branches of a oneOf
            return [(where, f"{value!r} matches more than one of the allowed forms, which must be one: "
                            + "; ".join(_describe(o, root) for o in options))]
        meant = _kind_branches(error)
        if len(meant) == 1:
            return [found for sub in meant[0] for found in _explained(sub, root, as_written)]
        return [(where, f"{value!r} is none of the allowed forms: " + "; ".join(_describe(o, root) for o in options))]
    return [(where, _message(error))]


def validate(config: dict, base_schema: dict) -> dict:
    """Check ``config`` against the composed schema, filling in every default, then for what a
    schema cannot express; raise :class:`ConfigError` listing every problem with its key."""
    normalize(config)
    problems = non_finite_numbers(config)
    if not problems:
        schema = compose_schema(base_schema)
        validator = _validator_filling_defaults(schema)
        written = copy.deepcopy(config)

        def as_written(path):
            node = written
            for part in path:
                try:
                    node = node[part]
                except (KeyError, IndexError, TypeError):
                    return node
            return node

        for error in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
            problems += [f"{where}: {message}" for where, message in _explained(error, schema, as_written)]
    if not problems:
        problems = semantic_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))
    return config


def model_params(experiment: dict) -> dict:
    return {k: v for k, v in experiment.items() if k not in COMMON_KEYS}


def model_spec(experiment: dict, m_te: int) -> dict:
    """The concrete model (name and ``build`` arguments) used with teacher size ``m_te``."""
    return models.specialize(experiment["model"], model_params(experiment), int(m_te))


def is_per_width(experiment: dict) -> bool:
    """An experiment over a list of student widths per teacher (``m_st`` a list, even of one):
    its tables are fitted, and its figures drawn, per student width."""
    return isinstance(experiment["m_st"], list)


def student_widths(experiment: dict, spec: dict) -> list[int]:
    """The student widths trained on a teacher whose concrete model is ``spec``."""
    m_st = experiment["m_st"]
    if isinstance(m_st, dict):  # M_ST = round(f d) or round(d^p) of the concrete model's d
        if "d_factor" in m_st:
            return [int(round(m_st["d_factor"] * spec["d"]))]
        return [int(round(spec["d"] ** m_st["d_power"]))]
    return [int(m) for m in (m_st if isinstance(m_st, list) else [m_st])]


def _grid(spec: dict) -> dict:
    return {"min": float(spec["min"]), "max": float(spec["max"]), "num": int(spec["num"])}


def learning_rules(experiment: dict) -> list[dict]:
    """The experiment's learning rules as recipes (name, grid, parameters): gradient flow on
    the experiment's times ``t``, the others on their own grids."""
    entries = experiment.get("rule", "gradient_flow")
    rules = []
    for entry in entries if isinstance(entries, list) else [entries]:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        name = entry.pop("name")
        grid = experiment["t"] if name == "gradient_flow" else entry.pop("steps" if name == "gradient_descent" else "mu")
        rules.append({"name": name, "grid": _grid(grid), **{k: float(v) for k, v in entry.items()}})
    return rules


def sample_sizes(experiment: dict) -> list[int | None]:
    """The student's sample sizes (``None``: trained on the population)."""
    samples = experiment.get("samples")
    if samples is None:
        return [None]
    sizes = samples["n"] if isinstance(samples["n"], list) else [samples["n"]]
    return [None if n == "population" else int(n) for n in sizes]


def fit_axes(experiment: dict) -> list[str]:
    """The columns the experiment sweeps (a list in the config): one fit, one heatmap column,
    per value of each."""
    axes = []
    if is_per_width(experiment):
        axes.append("m_st")
    if isinstance((experiment.get("samples") or {}).get("n"), list):
        axes.append("n")
    if isinstance(experiment.get("rule"), list):
        axes.append("rule")
    return axes


def drop_gpu_only(config: dict, backend: str) -> list[str]:
    """Remove experiments marked ``gpu_only`` when the plan's target (``backend``, resolved) is
    NumPy (unless the config asks to run them anyway); returns the names removed."""
    if backend == "cupy" or config.get("run_gpu_only_on_cpu", False):
        return []
    skipped = [n for n, e in config["experiments"].items() if e.get("gpu_only", False)]
    for name in skipped:
        del config["experiments"][name]
    return skipped


def _dataset_problems(key: str, exp: dict, spec: dict) -> list[str]:
    """A dataset as the population: what it cannot be asked for, and a split its rows cannot give."""
    from .datasets import ROLES, split_sizes

    if spec["name"] != "dataset":
        return [f"{key}.split: the split protocol divides a dataset's rows; model {spec['name']} has none (model: "
                "dataset)"] if "split" in exp else []
    problems = [f"{key}.{other}: a dataset's population is its rows, so a student is not trained on samples of it; "
                "use split (the teacher, the student and the measure each on their own rows)"
                for other in ("samples", "teacher_samples", "validation") if exp.get(other)]
    rows, fitted_on, where = spec["rows"], spec["rows"], "the dataset's"
    split = exp.get("split")
    if split:
        total = sum(float(split[r]) for r in ROLES)
        if total > 1 + 1e-12:
            problems.append(f"{key}.split: the fractions teacher + student + test add up to {total:g}; at most 1 (the "
                            "splits are disjoint)")
        sizes = split_sizes(rows, split)
        small = [f"{r} {sizes[r]}" for r in ROLES if sizes[r] < 2]
        if small:
            problems.append(f"{key}.split: {rows} rows give too few rows for a role ({', '.join(small)}); each needs at "
                            "least 2: larger fractions, or a larger dataset")
        fitted_on, where = sizes["teacher"], "the teacher split's"
    exact = sorted(m for m in exp["m_te"] if int(m) >= fitted_on)
    if exact:
        problems.append(f"{key}.m_te: {exact} teacher features for {where} {fitted_on} rows: such a teacher fits its "
                        f"target exactly (L_TE = 0), so no ratio or PGR exists; every m_te must be below {fitted_on}")
    return problems


def semantic_problems(config: dict) -> list[str]:
    """What the schema cannot express: orderings and consistency between keys."""
    problems = []
    for name, exp in config["experiments"].items():
        key = f"experiments.{name}"
        m_te = exp["m_te"]
        t = exp["t"]
        if t["min"] >= t["max"]:
            problems.append(f"{key}.t: need 0 < min < max; got min={t['min']}, max={t['max']}")
        try:
            widths = {m: student_widths(exp, model_spec(exp, m)) for m in m_te}
        except ValueError as exc:
            blamed = getattr(exc, "key", None)  # a dataset names the key of its own problem
            problems.append(f"{key}.{blamed}: {exc.message}" if blamed else f"{key}: {exc}")
            continue
        too_big = sorted(m for m, ws in widths.items() if any(m >= w for w in ws))
        if too_big:
            every = sorted({w for ws in widths.values() for w in ws})
            problems.append(f"{key}.m_te: every teacher size must be smaller than m_st = "
                            f"{every[0] if len(every) == 1 else every}; got {too_big}")
        if "degrees" in exp and not getattr(models.model_module(exp["model"]), "PER_DEGREE", False):
            problems.append(f"{key}.degrees: model {exp['model']} has no expansion in degrees; only "
                            + ", ".join(n for n, m in sorted(models.REGISTRY.items()) if getattr(m, "PER_DEGREE", False))
                            + " has")
        problems += _dataset_problems(key, exp, model_spec(exp, m_te[0]))
        shown = exp.get("show") or {}
        if "m_st" in shown and shown["m_st"] not in (exp["m_st"] if isinstance(exp["m_st"], list) else []):
            problems.append(f"{key}.show.m_st: {shown['m_st']} is not one of the student widths of m_st ({exp['m_st']})")
        if "n" in shown and shown["n"] not in sample_sizes(exp):
            problems.append(f"{key}.show.n: {shown['n']} is not one of the sample sizes of samples.n")
        rules = learning_rules(exp)
        names = [r["name"] for r in rules]
        if len(set(names)) != len(names):
            problems.append(f"{key}.rule: each learning rule at most once; got {names}")
        for r in rules:
            grid_key = {"gradient_descent": "steps", "ridge": "mu"}.get(r["name"])  # gradient flow's: t, above
            if grid_key and r["grid"]["min"] >= r["grid"]["max"]:
                problems.append(f"{key}.rule.{grid_key}: {r['name']}'s grid needs min < max; got min "
                                f"{r['grid']['min']:g}, max {r['grid']['max']:g}")
        if "degrees" in exp and (exp.get("samples") or any("eta_times_lam_max" in r for r in rules)):
            problems.append(f"{key}.degrees: the breakdown is of the population student (no samples) under a rule "
                            "that needs no training kernel (an absolute gradient-descent step)")
        validation = exp.get("validation")
        if validation and (exp.get("samples") or exp.get("teacher_samples") or names != ["gradient_flow"]):
            problems.append(f"{key}.validation: the three-way check is of gradient flow on the population; drop "
                            "samples, teacher_samples and other rules from this experiment, or the validation")
        if validation:
            if isinstance(exp["m_st"], (list, dict)):
                problems.append(f"{key}.validation: needs a single integer m_st")
            if any(model_spec(exp, m) != model_spec(exp, m_te[0]) for m in m_te):
                problems.append(f"{key}.validation: needs a model that does not change with the teacher size")
            checked = list(validation["convergence_m_st"]) + [validation["sampled"]["m_st"]]
            small = [w for w in checked if w <= max(m_te)]
            if small:
                problems.append(f"{key}.validation: student widths must exceed the largest m_te = {max(m_te)}; "
                                f"got {small}")
    return problems
