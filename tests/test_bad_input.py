"""The bad-input table: each broken input stops its stage script with one error that names the file and
the line or key, exit code 1, and what an earlier run produced is left as it was.

The scripts run in-process (runpy, as `python scripts/X.py` would), through the same `stage.run` that
turns InputError into the message a user sees.
"""
import json
import re
import runpy
import sys

import pytest
import yaml

from selfalign.config import load_params, validate_params

from conftest import ROOT

PARAMS = validate_params(yaml.safe_load((ROOT / "params.yaml").read_text()))
TYPES = (ROOT / "data/seeds/red_team_types.jsonl").read_text(encoding="utf-8").splitlines()
FINISHED = '{"id": "done", "note": "output of an earlier run"}\n'


def run_script(name: str, *args: str) -> int:
    """The exit code of `python scripts/<name> <args>`, run in this process."""
    argv = sys.argv
    sys.argv = [str(ROOT / "scripts" / name), *args]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        sys.argv = argv


def slice_of(*keys: str) -> str:
    return json.dumps({k: PARAMS[k] for k in keys})


def topics_with(tmp, types: bytes | str):
    path = tmp / "red_team_types.jsonl"
    path.write_bytes(types if isinstance(types, bytes) else types.encode())
    return ("generate_topics.py", "--model", str(tmp / "no-model-needed"), "--types", str(path),
            "--template", str(ROOT / "templates/topics.j2"), "--params", slice_of("seed", "generation", "topics"),
            "--shard", "0", "--out", str(tmp / "out.jsonl"))


def type_record(i: int, **change) -> str:
    return json.dumps(json.loads(TYPES[i]) | change)


def align_with(tmp, *, principles: str | None = None, truthfulqa: str | None = None):
    (tmp / "queries.jsonl").write_text('{"id": "q-1", "query": "How do I boil an egg?"}\n')
    p = tmp / "principles.yaml"
    p.write_text(principles or (ROOT / "principles/principles.yaml").read_text())
    t = tmp / "TruthfulQA.csv"
    t.write_text(truthfulqa or (ROOT / "data/eval/truthfulqa/TruthfulQA.csv").read_text())
    return ("generate_aligned.py", "--model", str(tmp / "no-model-needed"), "--queries", str(tmp / "queries.jsonl"),
            "--principles", str(p), "--exemplars", str(ROOT / "principles/exemplars.yaml"),
            "--template", str(ROOT / "templates/align.j2"), "--hhh", str(ROOT / "data/eval/hhh"),
            "--truthfulqa", str(t), "--truthfulqa-mc", str(ROOT / "data/eval/truthfulqa_bigbench/task_mc.json"),
            "--xstest", str(ROOT / "data/eval/xstest/xstest_prompts.csv"),
            "--params", slice_of("seed", "generation", "principles", "align"),
            "--shard", "0", "--out", str(tmp / "out.jsonl"))


def with_unknown_principle_field(text: str) -> str:
    doc = yaml.safe_load(text)
    doc["principles"]["3"]["emoji"] = "x"
    return yaml.safe_dump(doc, sort_keys=False)


def missing_tqa_column(text: str) -> str:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(text)))
    buf = io.StringIO()
    w = csv.DictWriter(buf, [c for c in rows[0] if c != "Incorrect Answers"], extrasaction="ignore")
    w.writeheader()
    w.writerows(rows[:5])
    return buf.getvalue()


CASES = {
    "empty seed file": (
        lambda tmp: topics_with(tmp, ""), r"red_team_types.jsonl: no records \(the file is empty\)"),
    "malformed JSONL line": (
        lambda tmp: topics_with(tmp, "\n".join([TYPES[0], '{"id": "rt-02", "name": ', TYPES[2]])),
        r"red_team_types.jsonl:2: malformed JSON \(Expecting value, column 25\)"),
    "non-UTF-8 bytes": (
        lambda tmp: topics_with(tmp, "\n".join(TYPES[:2]).encode() + b'\n{"id": "rt-03", "name": "caf\xe9"}\n'),
        r"red_team_types.jsonl:3: not valid UTF-8"),
    "a seed of 100k characters": (
        lambda tmp: topics_with(tmp, "\n".join([TYPES[0], type_record(1, description="x" * 100_000)])),
        r"red_team_types.jsonl: record 2 \(id=rt-02\): field 'description' has 100000 characters \(max 2000\)"),
    "duplicate ids": (
        lambda tmp: topics_with(tmp, "\n".join([TYPES[0], TYPES[1], type_record(2, id="rt-01")])),
        r"red_team_types.jsonl: record 3: duplicate id 'rt-01'"),
    "a model path that does not exist": (
        lambda tmp: ("prepare_model.py", "--params", json.dumps({"model": {"name": str(tmp / "no/such/model")}}),
                     "--out", str(tmp / "out")),
        r"params.yaml: model.name='.*no/such/model': no such folder"),
    "a hub id that is neither reachable nor cached": (
        lambda tmp: ("prepare_model.py", "--params", json.dumps({"model": {"name": "nobody/no-such-model"}}),
                     "--out", str(tmp / "out")),
        r"params.yaml: model.name='nobody/no-such-model': not a local folder, and the hub id could not be loaded"),
    "an eval file missing a column": (
        lambda tmp: align_with(tmp, truthfulqa=missing_tqa_column((ROOT / "data/eval/truthfulqa/TruthfulQA.csv").read_text())),
        r"TruthfulQA.csv: missing column\(s\) Incorrect Answers"),
    "a principles file with an unknown field": (
        lambda tmp: align_with(tmp, principles=with_unknown_principle_field((ROOT / "principles/principles.yaml").read_text())),
        r"principles.yaml: principles entry '3': unknown field\(s\) 'emoji'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_stops_with_one_clear_error_and_keeps_finished_work(case, tmp_path, capsys):
    make, pattern = CASES[case]
    args = make(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_text(FINISHED)  # what an earlier run of the stage left
    if args[0] == "prepare_model.py":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "selfalign_model.json").write_text(FINISHED)
    code = run_script(*args)
    err = capsys.readouterr().err
    assert code == 1, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and re.search(pattern, lines[0]), err
    assert "Traceback" not in err
    assert out.read_text() == FINISHED
    if args[0] == "prepare_model.py":
        assert (tmp_path / "out" / "selfalign_model.json").read_text() == FINISHED


def test_params_of_the_wrong_type_name_the_file_and_key(tmp_path):
    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["generation"]["batch_size"] = "eight"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError) as e:
        load_params(path)
    assert str(path) in str(e.value) and "at generation.batch_size: 'eight' is not of type 'integer'" in str(e.value)


def test_a_model_with_its_own_code_is_refused_unless_trust_remote_code_is_on(tmp_path, monkeypatch, capsys):
    from selfalign.models import materialize

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(
        {"model_type": "selfalign_probe", "auto_map": {"AutoConfig": "configuration_probe.ProbeConfig"}}))
    # The model's own code leaves a mark where it ran (transformers imports it from a cache copy).
    (folder / "configuration_probe.py").write_text(
        "import os, pathlib\n"
        "pathlib.Path(os.environ['SELFALIGN_PROBE']).write_text('ran')\n"
        "from transformers import PretrainedConfig\n"
        "class ProbeConfig(PretrainedConfig):\n    model_type = 'selfalign_probe'\n")
    mark = tmp_path / "ran"
    monkeypatch.setenv("SELFALIGN_PROBE", str(mark))
    code = run_script("prepare_model.py", "--params", json.dumps({"model": {"name": str(folder)}}),
                         "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 1 and "the model needs its own Python code" in err and "model.trust_remote_code: true" in err
    assert not mark.exists() and not (tmp_path / "out" / "selfalign_model.json").exists()
    manifest = materialize(str(folder), tmp_path / "out", trust_remote_code=True)
    assert mark.read_text() == "ran" and manifest["trust_remote_code"] is True
