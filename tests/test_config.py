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


def test_a_setting_left_out_of_params_yaml_is_named(params):
    # No defaults: a deleted line is an error, not a value from somewhere DVC does not track.
    del params["generation"]["batch_size"]
    with pytest.raises(InputError, match=r"at generation: 'batch_size' is a required property"):
        validate_params(params)


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


def test_the_schema_requires_every_key_it_knows_and_holds_no_defaults():
    """One source per setting: params.yaml. A default in the schema would be a second one."""
    schema = yaml.safe_load((ROOT / "schemas/params.schema.yaml").read_text())

    def objects(node, where):
        if isinstance(node, dict):
            if "properties" in node:
                yield where, node
            for key, sub in node.items():
                yield from objects(sub, f"{where}.{key}" if where else key)

    found = list(objects(schema, ""))
    assert len(found) > 10  # the walk reaches the nested sections
    assert [w for w, node in found if set(node.get("required", ())) != set(node["properties"])] == []
    assert [w for w, node in found for sub in node["properties"].values() if isinstance(sub, dict) and "default" in sub] == []
