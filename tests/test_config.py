import copy

import pytest
import yaml

from selfalign.core.config import ParamsSlice, load_params, parse_slice, validate_params
from selfalign.core.files import InputError

from conftest import ROOT


@pytest.fixture
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_repo_params_are_valid(params):
    validate_params(params)


@pytest.mark.parametrize("mutate, expected", [
    (lambda p: p.update(topcs={}), "'topcs' was unexpected"),
    (lambda p: p["queries"]["decoding"].update(temprature=0.5), "at queries.decoding"),
    (lambda p: p["generation"].update(batch_size="8"), "at generation.batch_size: '8' is not of type 'integer'"),
    (lambda p: p["queries"]["decoding"].update(top_p=1.5), "at queries.decoding.top_p"),
    (lambda p: p.pop("model"), "'model' is a required property"),
])
def test_bad_params_name_the_key(params, mutate, expected):
    mutate(params)
    with pytest.raises(InputError, match="invalid setting") as e:
        validate_params(params, source="params.yaml")
    assert expected in str(e.value)


def test_defaults_are_filled(params):
    del params["generation"]["batch_size"]
    assert validate_params(params)["generation"]["batch_size"] == 8


def test_unreadable_params_file(tmp_path):
    (tmp_path / "params.yaml").write_text("seed: [1\n")
    with pytest.raises(InputError, match=r"params.yaml:2: not valid YAML \(expected ',' or '\]', but got '<stream end>'"):
        load_params(tmp_path / "params.yaml")


def test_slice_carries_only_declared_keys(params):
    s = ParamsSlice(params, "seed", "queries.decoding")
    assert s.keys == ["seed", "queries.decoding"]
    assert parse_slice(str(s)) == {"seed": params["seed"], "queries": {"decoding": params["queries"]["decoding"]}}
    with pytest.raises(KeyError, match="queries.nope"):
        ParamsSlice(params, "queries.nope")


def test_schema_defaults_are_the_values_params_yaml_ships():
    """One source per setting: a default in the schema that params.yaml states differently would make a
    deleted line change the run."""
    schema = yaml.safe_load((ROOT / "schemas/params.schema.yaml").read_text())
    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())

    def walk(node, value, where):
        node = schema["$defs"][node["$ref"].split("/")[-1]] if "$ref" in node else node
        for key, sub in (node.get("properties") or {}).items():
            here = f"{where}.{key}" if where else key
            if "default" in sub and sub["default"] != {} and isinstance(value, dict) and key in value:
                yield here, sub["default"], value[key]
            if isinstance(value, dict) and isinstance(value.get(key), dict):
                yield from walk(sub, value[key], here)

    checked = list(walk(schema, shipped, ""))
    assert len(checked) > 40  # the walk reaches the nested sections
    assert [(k, d, v) for k, d, v in checked if d != v] == []
