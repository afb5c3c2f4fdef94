"""The bad-input table. Through the front door (THROUGH_DVC): a broken input goes into one pipeline
copy (git + DVC, a tiny model) and `dvc repro <stage>` must stop with a non-zero exit code, one
`error: <file>:<line or key>: ...` line, no traceback, and a known state on disk afterwards:

- found by the `check` stage (most cases): DVC never reached the stage, so every output earlier
  runs left is byte for byte as it was;
- found inside the stage (a prompt longer than the model's context, a full disk): DVC had already
  removed the stage's outputs; the error's note says so, and the commands it gives restore them;
- found by DVC itself (params.yaml that is not YAML): DVC's own message, nothing removed.

Those cases run one after another in the same copy; each restores the inputs it broke. The other
cases are all found by the check stage, and run through its function on a fresh copy of the inputs.
"""
from __future__ import annotations

import errno
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import yaml

from selfalign.core import files as sio
from selfalign.core.config import load_params

from conftest import ROOT, run_script
from pipeline import Pipeline, copy_pipeline

# What earlier runs left: every case must leave these as they were (or say how to get them back).
OUTPUTS = ["models/base/selfalign_model.json", "data/topics/topics.jsonl", "metrics/topics.json",
           "data/queries/queries.jsonl", "data/queries/rejected.jsonl", "metrics/queries.json",
           "data/aligned/aligned.jsonl", "data/aligned/rejected.jsonl", "metrics/align.json",
           "plots/principle_citations.csv"]
FULL_DISK = '''# A full disk for one script: every fsync of the file it writes fails with ENOSPC.
import errno, os, sys
if sys.argv and sys.argv[0].endswith(os.environ.get("SELFALIGN_FULL_DISK_SCRIPT", "\\0")):
    def _fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.fsync = _fsync
'''


def _snapshot(path: Path) -> dict[str, bytes | None]:
    return {o: (path / o).read_bytes() if (path / o).exists() else None for o in OUTPUTS}


@pytest.fixture(scope="module")
def pipe(tiny_model_dir, tmp_path_factory):
    """A pipeline copy whose model, topics, queries and align stages are done (the last three with
    hand-made outputs recorded by `dvc commit`, so no case has to generate them)."""
    p = Pipeline(tmp_path_factory.mktemp("bad-input"), str(tiny_model_dir))
    params = p.params
    params["generation"]["shards"] = 1
    params["align"]["decoding"]["max_new_tokens"] = 4
    params["align"].update(red_team_share=None, heldout_queries=0)  # the one query below is answered
    p.set_params(params)
    p.repro("model")  # and the check stage before it
    made = {
        "data/topics/topics.jsonl": '{"id": "tp-0000000000000001", "topic": "an earlier run"}\n',
        "metrics/topics.json": '{"kept": 1}\n',
        "data/queries/queries.jsonl": '{"id": "q-0000000000000001", "query": "How long should I boil an egg?", "source": "self_instruct", "type_id": null}\n',
        "data/queries/rejected.jsonl": "",
        "metrics/queries.json": '{"kept": 1}\n',
        "data/aligned/aligned.jsonl": '{"id": "a-0000000000000001", "answer": "an earlier run"}\n',
        "data/aligned/rejected.jsonl": "",
        "metrics/align.json": '{"kept": 1}\n',
        "plots/principle_citations.csv": "principle,citations\n1 (ethical),1\n",
    }
    for name, text in made.items():
        (p.path / name).parent.mkdir(parents=True, exist_ok=True)
        (p.path / name).write_text(text)
    p.sh("dvc", "commit", "-f", "topics", "queries", "align")
    p.sh("git", "add", "-A")
    p.sh("git", "commit", "-qm", "earlier run")
    assert p.sh("dvc", "status", "check", "model", "topics", "queries", "align").stdout.strip() == \
        "Data and pipelines are up to date."
    p.before = _snapshot(p.path)
    full_disk = tmp_path_factory.mktemp("full-disk")
    (full_disk / "sitecustomize.py").write_text(FULL_DISK)
    p.full_disk = str(full_disk)
    return p


# ---- how the cases break their input (each works on the copy's files; git restores them)

def edit(path: str, old: str, new: str, count: int = 1) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        text = (root / path).read_text(encoding="utf-8")
        assert old in text, (path, old)
        (root / path).write_text(text.replace(old, new, count), encoding="utf-8")
    return apply


def write(path: str, content: bytes | str | Callable[[str], str]) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        new = content((root / path).read_text(encoding="utf-8")) if callable(content) else content
        (root / path).write_bytes(new if isinstance(new, bytes) else new.encode())
    return apply


def param(dotted: str, value) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        doc = yaml.safe_load((root / "params.yaml").read_text())
        *parents, last = dotted.split(".")
        node = doc
        for k in parents:
            node = node[k]
        node[last] = value
        (root / "params.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return apply


def seed_lines(change: Callable[[list[str]], list[str]], path: str = "data/seeds/red_team_types.jsonl"):
    return write(path, lambda text: "\n".join(change(text.splitlines())) + "\n")


def record(line: str, **change) -> str:
    return json.dumps(json.loads(line) | change)


def principle_field(number: str, field: str, value) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        path = root / "principles/principles.yaml"
        doc = yaml.safe_load(path.read_text())
        doc["principles"][number][field] = value
        path.write_text(yaml.safe_dump(doc, sort_keys=False, width=1_000_000))
    return apply


def truthfulqa_without(column: str) -> Callable[[str], str]:
    def change(text: str) -> str:
        import csv
        import io

        rows = list(csv.DictReader(io.StringIO(text)))
        buf = io.StringIO()
        w = csv.DictWriter(buf, [c for c in rows[0] if c != column], extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows[:5])
        return buf.getvalue()
    return change


def custom_code_model(root: Path) -> None:
    folder = root / "custom-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": {"AutoConfig": "c.C"}}))
    param("model.name", str(folder))(root)


@dataclass
class Case:
    stage: str  # the `dvc repro` target
    change: Callable[[Path], None]
    error: str  # regex the one `error:` line matches (for found_by="dvc": DVC's output)
    found_by: str = "check"  # "check" (nothing removed), "stage" (outputs removed, note restores them) or "dvc"
    env: dict | None = None
    args: tuple[str, ...] = ()  # more `dvc repro` arguments


LONG_TEXT = " ".join(["careful"] * 5_000)  # over the tiny model's context of 2,048 tokens
CASES = {
    # The README's table: seeds, params, model, eval data, principles.
    "empty seed file": Case("topics", write("data/seeds/red_team_types.jsonl", ""),
                            r"^error: data/seeds/red_team_types.jsonl: no records \(the file is empty\)$"),
    "malformed JSONL line": Case("topics", seed_lines(lambda ls: [ls[0], '{"id": "rt-02", "name": ', *ls[2:]]),
                                 r"red_team_types.jsonl:2: malformed JSON \(Expecting value, column 25\)"),
    "non-UTF-8 bytes": Case("topics", write("data/seeds/red_team_types.jsonl", lambda t: (
        "\n".join(t.splitlines()[:2]) + '\n{"id": "rt-03", "name": "caf').encode() + b'\xe9"}\n'),
                            r"red_team_types.jsonl:3: not valid UTF-8 \(invalid continuation byte at byte 28\)"),
    "a seed of 100k characters": Case("topics", seed_lines(lambda ls: [ls[0], record(ls[1], description="x" * 100_000)]),
                                      r"red_team_types.jsonl:2 \(id=rt-02\): field 'description' has 100000 characters "
                                      r"\(max 2000\)"),
    "duplicate ids": Case("topics", seed_lines(lambda ls: [ls[0], ls[1], record(ls[2], id="rt-01")]),
                          r"red_team_types.jsonl:3: duplicate id 'rt-01' \(first on line 1\)"),
    "params of the wrong type": Case("topics", param("generation.batch_size", "eight"),
                                     r"^error: params.yaml: 1 invalid setting: at generation.batch_size: 'eight' is not "
                                     r"of type 'integer'$"),
    "a model path that does not exist": Case("model", param("model.name", "/models/llama"),
                                             r"^error: params.yaml: model.name='/models/llama': no such folder$"),
    "a hub id that is neither reachable nor cached": Case(
        "model", param("model.name", "nobody/no-such-model"),
        r"params.yaml: model.name='nobody/no-such-model': not a local folder, and the hub id could not be loaded"),
    "a model folder that needs its own code": Case(
        "model", custom_code_model, r"params.yaml: model.name='.*custom-model': the model needs its own Python code "
                                    r"\(auto_map in its config.json\); set model.trust_remote_code: true"),
    "an eval file missing a column": Case("align", write("data/eval/truthfulqa/TruthfulQA.csv",
                                                         truthfulqa_without("Incorrect Answers")),
                                          r"TruthfulQA.csv: missing column\(s\) Incorrect Answers \(have: "),
    "a principles file with an unknown field": Case("align", principle_field("3", "emoji", "x"),
                                                    r"^error: principles/principles.yaml:\d+: principles entry '3': unknown "
                                                    r"field\(s\) 'emoji' \(allowed: name, text\)$"),
    "params.yaml that is not YAML": Case("topics", write("params.yaml", lambda t: t + "seed: [1\n"),
                                         r"ERROR: unable to read: 'params.yaml', YAML file structure is corrupted(.|\n)*"
                                         r"line \d+", found_by="dvc"),
    # Issue 16, 1: bad params used to empty the stage's outputs.
    "seed that is not a number": Case("topics", param("seed", "abc"),
                                      r"^error: params.yaml: 1 invalid setting: at seed: 'abc' is not of type 'integer'$"),
    "principles.exclude naming no principle": Case("align", param("principles.exclude", [99]),
                                                   r"^error: params.yaml: principles.exclude lists \[99\], which "
                                                   r"principles/principles.yaml does not define$"),
    # 2: keys DVC cannot hash, and keys int() cannot read.
    'principle keys "6" and 6 in one file': Case("align", edit("principles/principles.yaml", '\n  "6":', "\n  6:"),
                                                 r'^error: principles/principles.yaml:\d+: principles entry 6 \(unquoted\) is '
                                                 r'written unlike entry "1" \(quoted\) on line \d+; write every key the '
                                                 r'same way, quoted \("6":\)'),
    'principle keys "5" and 5': Case("align", edit("principles/principles.yaml", '\n  "6":', "\n  5:"),
                                     r"^error: principles/principles.yaml:\d+: principles entry 5 \(unquoted\) is written "
                                     r"unlike entry"),
    "a principle key that is not ASCII digits": Case("align", edit("principles/principles.yaml", '\n  "7":', '\n  "²":'),
                                                     r"^error: principles/principles.yaml:\d+: principles entry '²': the key "
                                                     r"must be a positive whole number"),
    "more exemplar rotations than exemplars": Case("align", param("align.exemplar_rotations", 6),
                                                   r"^error: params.yaml: align.exemplar_rotations=6, but "
                                                   r"principles/exemplars.yaml has 5 exemplars"),
    # 3: names and `follows` that citations would misread.
    "a principle name over 40 characters": Case(
        "align", principle_field("2", "name", "informative, accurate and up to date in every detail"),
        r"^error: principles/principles.yaml:\d+: principles entry '2': name 'informative, accurate and up to date in "
        r"every detail' has 52 characters; .* over 40 characters cannot be read back"),
    "two names equal after normalisation": Case(
        "align", principle_field("5", "name", "question-assessment"),
        r"^error: principles/principles.yaml:\d+: principles entry '5': name 'question-assessment' reads the same in a "
        r"citation as the name of principle '4' on line \d+ \('question assessment'\)"),
    "follows that is not all numbers": Case("align", edit("principles/exemplars.yaml", "follows: [8, 2]",
                                                          "follows: [true, 2]"),
                                            r"^error: principles/exemplars.yaml:\d+: exemplars entry '1': 'follows' must "
                                            r"be a non-empty list of principle numbers, such as \[8, 2\] \(got \[True, 2\]\)$"),
    # 4: a prompt longer than the model's context; only the stage has the model's tokenizer to count it.
    "a principle longer than the model's context": Case("align", principle_field("5", "text", LONG_TEXT),
                                      r"^error: principles/principles.yaml: principles entry 5 \(reasoning\) has 5,\d{3} "
                                      r"tokens: the prompt for q-0000000000000001 is \d,\d{3} tokens, and with "
                                      r"align.decoding.max_new_tokens=4 more it exceeds the model's context of 2,048 tokens "
                                      r"\(.*config.json: max_position_embeddings\)", found_by="stage"),
    # GPU and cluster settings that cannot run: found before any stage starts.
    "parameter offload without ZeRO-3": Case("align", param("train.offload", "all"),
                                             r"^error: params.yaml: train.offload=all offloads the parameters, which only "
                                             r"ZeRO-3 partitions \(train.zero_stage is 2\)"),
    "processes that do not divide over the nodes": Case("align", param("train.nodes", 3),
                                                        r"^error: params.yaml: train.processes=\d+ is not a multiple of "
                                                        r"train.nodes=3"),
    "an engine spanning more GPUs than its job takes": Case(
        "align", lambda root: (param("generation.gpus_per_shard", 2)(root), param("generation.tensor_parallel_size", 4)(root)),
        r"^error: params.yaml: generation.tensor_parallel_size=4 spans more GPUs than each shard job takes "
        r"\(generation.gpus_per_shard=2\)"),
    # 5: a full disk in a collect step.
    "a full disk while a collect step writes": Case(
        "align", lambda root: None,
        r"^error: data/aligned/\S+: could not write: No space left on device \(errno 28\)", found_by="stage",
        env={"SELFALIGN_FULL_DISK_SCRIPT": "collect_aligned.py"}, args=("--force", "--single-item")),
    # 6: templates.
    "a template with {% include %}": Case("topics", write("templates/topics.j2", lambda t: t + '{% include "x.j2" %}\n'),
                                          r"^error: templates/topics.j2:\d+: \{% include %\} is not allowed"),
    "a template that divides by zero": Case("align", edit("templates/align.j2", "{{ identity }}", "{{ identity }}{{ 1/0 }}"),
                                            r"^error: templates/align.j2:3: template error: ZeroDivisionError: division by "
                                            r"zero$"),
    # 7: seeds follow the principles' rules: unknown fields are errors, lines are counted as lines.
    "a Self-Instruct seed with an input field": Case(
        "queries", seed_lines(lambda ls: [ls[0], record(ls[1], input="some text"), *ls[2:]], "data/seeds/self_instruct.jsonl"),
        r"^error: data/seeds/self_instruct.jsonl:2 \(id=si-002\): unknown field\(s\) 'input' \(allowed: id, instruction\)$"),
    "an error after blank lines names the line": Case(
        "topics", seed_lines(lambda ls: [ls[0], "", "", ls[1], ls[2], record(ls[3], description=" ")]),
        r"^error: data/seeds/red_team_types.jsonl:6 \(id=rt-04\): field 'description' must be non-empty text$"),
}


# Through `dvc repro`: every way a case can end (found by the check stage, inside a stage, by DVC) and
# each kind of input the check stage reads. Every other case is found by the check stage as well, so
# it runs through that stage's function, in-process (test_bad_input_found_by_the_check_stage): the
# same error line, in a fraction of a `dvc repro` (about 13 s each).
THROUGH_DVC = ["empty seed file", "params of the wrong type", "a model folder that needs its own code",
               "an eval file missing a column", 'principle keys "6" and 6 in one file', "params.yaml that is not YAML",
               "a principle longer than the model's context", "a full disk while a collect step writes",
               "a template that divides by zero"]
IN_PROCESS = [name for name in CASES if name not in THROUGH_DVC]
assert all(CASES[name].found_by == "check" for name in IN_PROCESS)

# scripts/check_inputs.py's arguments as rules/check.smk passes them (the cases above run that rule).
CHECK_INPUTS = dict(
    params="params.yaml", seeds="data/seeds/self_instruct.jsonl", types="data/seeds/red_team_types.jsonl",
    principles="principles/principles.yaml", exemplars="principles/exemplars.yaml",
    templates={name: f"templates/{name}.j2" for name in ("topics", "self_instruct", "red_team_questions", "align", "verbose")},
    hhh="data/eval/hhh", truthfulqa="data/eval/truthfulqa/TruthfulQA.csv",
    truthfulqa_mc="data/eval/truthfulqa_bigbench/task_mc.json", xstest="data/eval/xstest/xstest_prompts.csv",
    xstest_gold="data/eval/xstest/completions_mistral_instruct_labelled.csv", ds_configs="configs/deepspeed")


@pytest.mark.parametrize("name", IN_PROCESS)
def test_bad_input_found_by_the_check_stage(tiny_model_dir, tmp_path, name, monkeypatch):
    from selfalign.core.files import InputError
    from selfalign.stages.checks import check_inputs

    copy_pipeline(tmp_path, str(tiny_model_dir))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as every stage runs (selfalign.core.stage.setup)
    check_inputs(**CHECK_INPUTS)  # the copy's own inputs pass
    CASES[name].change(tmp_path)
    with pytest.raises(InputError) as e:
        check_inputs(**CHECK_INPUTS)
    line = f"error: {e.value}"  # as selfalign.core.stage.run prints it
    assert "\n" not in line and re.search(CASES[name].error, line), line


@pytest.mark.slow
@pytest.mark.parametrize("name", THROUGH_DVC)
def test_bad_input_through_dvc_repro(pipe, name):
    case = CASES[name]
    env = None
    if case.env:  # the full-disk shim first on the path of every Python process the case starts
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [pipe.full_disk, os.environ.get("PYTHONPATH")])), **case.env}
    try:
        case.change(pipe.path)
        r = pipe.repro(*case.args, case.stage, check=False, env=env)
        left = _snapshot(pipe.path)  # before git restores the inputs (and, with them, the metrics git tracks)
    finally:
        pipe.sh("git", "checkout", "-q", "--", ".")
        pipe.sh("git", "clean", "-qfd")  # files a case added (not ignored ones: DVC's outputs stay)
    out = r.stdout + r.stderr
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    notes = [line for line in out.splitlines() if line.startswith("note: ")]
    assert r.returncode != 0, out
    assert "Traceback" not in out, out
    if case.found_by == "dvc":
        assert re.search(case.error, out) and not errors and not Pipeline.ran(r), out
    else:
        assert len(errors) == 1 and re.search(case.error, errors[0]), out
    if case.found_by in ("check", "dvc"):
        assert Pipeline.ran(r) in ([], ["check"]), out  # the stage itself never ran
        assert not notes and left == pipe.before
        return
    # Found inside the stage: DVC had removed its outputs; the note says how to restore them.
    assert case.stage == "align" and Pipeline.ran(r)[-1] == case.stage and len(notes) == 1, out
    stage_outputs = [o for o in OUTPUTS if o.startswith(("data/aligned", "metrics/align", "plots/principle"))]
    assert left == {o: None if o in stage_outputs else v for o, v in pipe.before.items()}, out
    commands = re.findall(r"`([^`]+)`", notes[0])
    assert commands[0] == f"dvc checkout {case.stage}", notes[0]
    for command in commands:
        pipe.sh(*command.split())
    assert _snapshot(pipe.path) == pipe.before


# ---- what the table cannot show through DVC

def test_a_full_disk_replaces_none_of_a_steps_outputs(tmp_path, monkeypatch):
    """Room for only some files: the ones written first must not replace their old versions either."""
    old = {name: f"old {name}\n" for name in ("rejected.jsonl", "align.json", "citations.csv", "aligned.jsonl")}
    for name, text in old.items():
        (tmp_path / name).write_text(text)
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(sio.OutputError) as e:
        with sio.replace_together():
            for name in old:
                sio.write_json(tmp_path / name, {"new": name})
    assert str(e.value) == (f"{tmp_path / 'citations.csv'}: could not write: No space left on device (errno 28); "
                            "none of this step's outputs were replaced")
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == old  # and no temp files left behind
    with sio.replace_together():  # with room again, all four are replaced
        for name in old:
            sio.write_json(tmp_path / name, {"new": name})
    assert all(json.loads((tmp_path / name).read_text()) == {"new": name} for name in old)


def test_every_name_the_loader_accepts_reads_back_from_a_thought(tmp_path):
    from selfalign.data import principles
    from selfalign.stages import align

    names = ["a", "x" * 40, "multi-aspect", "knowledge recitation", "naïve café", "step 2 of 3"]
    doc = {"principles": {str(i): {"name": n, "text": "t"} for i, n in enumerate(names, 1)} | {"999": {"name": "last", "text": "t"}}}
    path = tmp_path / "principles.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True))
    loaded = principles.load_principles(path)
    thought = "The user asks. I will follow " + principles.citation([p.id for p in loaded], loaded) + "."
    parsed = align.parse_response(f" {thought}\n\nSage: Here is the answer.", stopped_by="\nUser:", assistant="Sage",
                                  principles=loaded, exemplar_grams=set())
    assert parsed.reason is None and parsed.cited == [p.id for p in loaded] and parsed.renumbered == 0
    for bad, message in [({"1000": {"name": "n", "text": "t"}}, "at most 3 digits"),
                         ({"1": {"name": "a (b)", "text": "t"}}, "must not contain parentheses"),
                         ({"1": {"name": "x" * 41, "text": "t"}}, "over 40 characters")]:
        path.write_text(yaml.safe_dump({"principles": bad}))
        with pytest.raises(sio.InputError, match=re.escape(message)):
            principles.load_principles(path)


def test_params_of_the_wrong_type_name_the_file_and_key(tmp_path):
    bad = yaml.safe_load((ROOT / "params.yaml").read_text())
    bad["generation"]["batch_size"] = "eight"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ValueError) as e:
        load_params(path)
    assert str(e.value) == f"{path}: 1 invalid setting: at generation.batch_size: 'eight' is not of type 'integer'"




def test_a_model_with_its_own_code_is_refused_unless_trust_remote_code_is_on(tmp_path, monkeypatch, capsys):
    from selfalign.engine.models import materialize

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
    monkeypatch.delenv("DVC_STAGE", raising=False)
    model = {"name": str(folder), "dtype": "float32", "trust_remote_code": False}
    code = run_script("prepare_model.py", "--params", json.dumps({"model": model}), "--out", str(tmp_path / "out"))
    err = capsys.readouterr().err
    assert code == 1 and "the model needs its own Python code" in err and "model.trust_remote_code: true" in err
    assert not mark.exists() and not (tmp_path / "out" / "selfalign_model.json").exists()
    manifest = materialize(str(folder), tmp_path / "out", trust_remote_code=True)
    assert mark.read_text() == "ran" and manifest["trust_remote_code"] is True
