"""params.yaml: validation against schemas/params.schema.yaml, and the per-stage slices of it.

A rule passes its script only the keys it declares (`ParamsSlice`); dvc.yaml is generated from
those declarations, so what a script can read and what DVC tracks are the same set of keys.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from selfalign.core.files import InputError, read_yaml

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "params.schema.yaml"


def validate_params(params: Any, *, source: str = "params.yaml", schema_path: Path = SCHEMA) -> dict:
    """Validate `params`; raise InputError naming every bad key at once.

    The schema holds no defaults: params.yaml states every setting, because DVC tracks each key a stage
    reads there (a key filled in from elsewhere would be a setting no `dvc params diff` shows), so every
    key is required. That is also why this is plain jsonschema and not snakemake.utils.validate, which
    adds only default-filling and stops at the first error."""
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        # One line, however many errors: "params.yaml: 1 invalid setting: at seed: 'abc' is not of type 'integer'".
        found = []
        for e in errors:
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            message = " ".join(e.message.split())
            found.append(f"at {where}: {message if len(message) <= 200 else message[:200] + '...'}")
        n = len(errors)
        raise InputError(f"{source}: {n} invalid setting{'s' if n > 1 else ''}: " + "; ".join(found))
    return params


def load_params(path: str | Path = "params.yaml") -> dict:
    path = Path(path)
    params = read_yaml(path)
    return validate_params(params if params is not None else {}, source=str(path))


def get_key(params: dict, dotted: str) -> Any:
    node = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"params has no key {dotted!r}")
        node = node[part]
    return node


class ParamsSlice:
    """The params.yaml keys one rule uses, passed to its script as JSON (`--params {params.p:q}`)."""

    def __init__(self, params: dict, *keys: str):
        self.keys = list(keys)
        self.value: dict = {}
        for dotted in keys:
            node = self.value
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = get_key(params, dotted)

    def __str__(self) -> str:
        return json.dumps(self.value, sort_keys=True)


def parse_slice(text: str) -> dict:
    """The script side of ParamsSlice."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"--params: not valid JSON ({e.msg})") from None
    if not isinstance(value, dict):
        raise InputError("--params: expected a JSON object")
    return value


if __name__ == "__main__":
    # `python -m selfalign.core.config seed topics` prints that slice of params.yaml, to run a script by hand.
    import sys

    print(ParamsSlice(load_params(), *sys.argv[1:]))
