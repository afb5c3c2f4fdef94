"""`dvc repro` end to end on the embedded SmolLM2 at a tiny scale: outputs, metrics, caching, what reruns when."""
import json

import pytest

from selfalign.io import read_jsonl

from pipeline import Pipeline


@pytest.fixture(scope="module")
def pipe(smollm2_dir, tmp_path_factory):
    p = Pipeline(tmp_path_factory.mktemp("pipeline"), str(smollm2_dir))
    first = p.repro()
    p.first_run = first
    return p


def test_repro_runs_every_stage_and_writes_valid_outputs(pipe):
    assert Pipeline.ran(pipe.first_run) == ["model", "topics", "queries"]
    topics = read_jsonl(pipe.path / "data/topics/topics.jsonl")
    queries = read_jsonl(pipe.path / "data/queries/queries.jsonl")
    assert topics and queries
    topic_ids = {t["id"] for t in topics}
    for q in queries:
        if q["source"] == "red_team":
            assert q["parent_ids"] == [q["topic_id"]] and q["topic_id"] in topic_ids
        else:
            assert all(p.startswith("si-") for p in q["parent_ids"])
    m = json.loads((pipe.path / "metrics/queries.json").read_text())
    removed = sum(v for k, v in m.items() if k.startswith("removed."))
    assert m["parsed"] == m["kept"] + removed
    assert len(read_jsonl(pipe.path / "data/queries/rejected.jsonl", allow_empty=True)) == removed
    assert not list(pipe.path.glob("data/*/shards/*.jsonl"))  # temp shards are gone
    assert not list(pipe.path.glob(".selfalign/journal/*/*.jsonl"))  # and so are the journals


def test_second_repro_runs_nothing(pipe):
    again = pipe.repro()
    assert Pipeline.ran(again) == []
    assert "didn't change, skipping" in again.stdout
    assert pipe.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_metrics_show_lists_stage_counts(pipe):
    out = pipe.sh("dvc", "metrics", "show", "--json").stdout
    metrics = json.loads(out)
    files = next(iter(metrics.values()))["data"]
    assert {"metrics/topics.json", "metrics/queries.json"} <= set(files)


def test_decoding_change_reruns_queries_only_and_revert_restores_from_cache(pipe):
    before = (pipe.path / "data/queries/queries.jsonl").read_bytes()
    params = pipe.params
    params["queries"]["decoding"]["temperature"] = 0.5
    pipe.set_params(params)
    assert "queries.decoding.temperature" in pipe.sh("dvc", "params", "diff").stdout
    changed = pipe.repro()
    assert Pipeline.ran(changed) == ["queries"]
    params["queries"]["decoding"]["temperature"] = 0.8
    pipe.set_params(params)
    back = pipe.repro()
    assert Pipeline.ran(back) == []  # restored from DVC's run cache, not generated again
    assert "is cached - skipping run" in back.stdout
    assert (pipe.path / "data/queries/queries.jsonl").read_bytes() == before


def test_bad_params_stop_the_pipeline_naming_the_key(pipe):
    # A typo renames a key: DVC sees the real key vanish and refuses to run, naming it; Snakemake
    # (which every stage runs) validates the file against the schema and names the typo itself.
    good = pipe.params
    bad_params = pipe.params
    bad_params["topics"]["max_per_tpe"] = bad_params["topics"].pop("max_per_type")
    pipe.set_params(bad_params)
    try:
        dvc = pipe.repro("topics", check=False)
        smk = pipe.sh("snakemake", "-n", "--quiet", "all", check=False)
    finally:
        pipe.set_params(good)
    assert dvc.returncode != 0 and "topics.max_per_type" in dvc.stderr
    assert smk.returncode != 0
    assert "at topics: Additional properties are not allowed ('max_per_tpe' was unexpected)" in smk.stdout + smk.stderr
    assert Pipeline.ran(pipe.repro()) == []  # the fixed file matches the last run again
