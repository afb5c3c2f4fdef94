"""`dvc repro` end to end on the embedded SmolLM2 at a tiny scale: outputs, metrics, caching, what reruns when."""
import json
import os
import shutil
import signal
import time

import pytest

from selfalign.core.files import read_jsonl

from pipeline import Pipeline

# End to end through `dvc repro` (minutes): `pytest -m "not slow"` leaves these out.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipe(tiny_pipeline):
    return tiny_pipeline  # one run for the session (conftest.py); test_slurm.py compares with its first outputs


def test_repro_runs_every_stage_and_writes_valid_outputs(pipe):
    assert Pipeline.ran(pipe.first_run) == ["check", "model", "topics", "queries", "align", "engrave", "verbose",
                                            "verbose_clone", "eval"]
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
    aligned = read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True)
    align_rejected = read_jsonl(pipe.path / "data/aligned/rejected.jsonl", allow_empty=True)
    query_ids = {q["id"] for q in queries}
    am = json.loads((pipe.path / "metrics/align.json").read_text())
    sampled, pool = am["mix"]["answered"], am["mix"]["pool"]
    assert pool["self_instruct"] + pool["red_team"] == len(queries) - am["removed_eval_contamination"]
    # align.max_queries, half of them red-team (align.red_team_share), after 2 held out (align.heldout_queries)
    assert len(aligned) + len(align_rejected) == sampled["self_instruct"] + sampled["red_team"] <= 8
    assert sampled["red_team_share"] == 0.5 and am["mix"]["heldout"]["self_instruct"] + am["mix"]["heldout"]["red_team"] == 2
    assert all(r["parent_ids"][0] in query_ids for r in aligned + align_rejected)
    assert {r["source"] for r in aligned + align_rejected} == {"self_instruct", "red_team"}
    assert all(isinstance(r["refusal"], bool) for r in aligned + align_rejected)
    assert set(am["refusal_share"]["kept"]) == {"self_instruct", "red_team", "red_team_by_type"}
    assert json.loads((pipe.path / "metrics/engrave.json").read_text())["mix"] == am["mix"]["kept"]
    citations = (pipe.path / "plots/principle_citations.csv").read_text().splitlines()
    assert citations[0] == "principle,citations" and len(citations) == 17
    # Both trained models load with plain transformers; eval scored all three checkpoints.
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from selfalign.engine.models import read_manifest

    # models/base may point at a local folder (its manifest's path) instead of holding the weights
    base = AutoConfig.from_pretrained(read_manifest(pipe.path / "models/base").get("path") or pipe.path / "models/base")
    for name in ("engraved", "final"):
        folder = pipe.path / "models" / name
        model, tok = AutoModelForCausalLM.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
        assert model.config.architectures == base.architectures and model.config.vocab_size == base.vocab_size
        ids = tok("User: Hello\n\nSage:", return_tensors="pt")["input_ids"]
        logits = model(ids).logits  # the base model's architecture and vocabulary, one finite row per token
        assert logits.shape == (1, ids.shape[1], base.vocab_size) and bool(logits.isfinite().all())
    ev = json.loads((pipe.path / "metrics/eval.json").read_text())
    assert set(ev) == {"base", "engraved", "final", "refusal_detector", "teacher"}
    # Engraving fidelity: every checkpoint against the principle-prompted teacher, on XSTest's 4 prompts and the
    # 2 held-out queries, none of which reached training.
    fid = read_jsonl(pipe.path / "data/eval_results/fidelity.jsonl")
    assert sorted(r["set"] for r in fid) == ["heldout"] * 2 + ["xstest"] * 4
    trained = {r["query"] for r in read_jsonl(pipe.path / "data/aligned/aligned.jsonl")}
    assert not trained & {r["prompt"] for r in fid if r["set"] == "heldout"}
    decided = sum(r["teacher_refusal"] is not None for r in fid)
    assert ev["teacher"]["no_answer"] == len(fid) - decided
    for c in ("base", "engraved", "final"):
        assert ev[c]["fidelity"]["n"] == decided
        assert all(isinstance(r[f"{c}_refusal"], bool) for r in fid)
    for c in ("base", "engraved", "final"):
        assert ev[c]["hhh"]["n"] == 8 and ev[c]["truthfulqa"]["n"] == 2 and ev[c]["truthfulqa_mc"]["n"] == 2
        assert ev[c]["hhh"]["acc_norm_lo"] <= ev[c]["hhh"]["acc_norm"] <= ev[c]["hhh"]["acc_norm_hi"]
        assert ev[c]["xstest"]["n_safe"] + ev[c]["xstest"]["n_unsafe"] == 4
    assert {"hhh", "truthfulqa_mc", "truthfulqa", "xstest"} <= set(ev["final"]["vs_base"])
    assert len(read_jsonl(pipe.path / "data/eval_results/xstest.jsonl")) == 3 * 4
    assert not list(pipe.path.glob("data/*/shards/*.jsonl"))  # temp shards are gone
    assert not list(pipe.path.glob(".selfalign/journal/*/*.jsonl"))  # and so are the journals
    assert not list(pipe.path.glob("data/eval_results/shards/*/*/*.jsonl"))


def test_second_repro_runs_nothing(pipe):
    again = pipe.repro()
    assert Pipeline.ran(again) == []
    assert "didn't change, skipping" in again.stdout
    assert pipe.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_metrics_show_lists_stage_counts(pipe):
    out = pipe.sh("dvc", "metrics", "show", "--json").stdout
    metrics = json.loads(out)
    files = next(iter(metrics.values()))["data"]
    assert {"metrics/topics.json", "metrics/queries.json", "metrics/align.json", "metrics/engrave.json",
            "metrics/verbose.json", "metrics/verbose_clone.json", "metrics/eval.json"} <= set(files)
    # Intervals and paired tests are scalars, so DVC shows and diffs them (it drops list values).
    ev = files["metrics/eval.json"]["data"]
    assert {"acc_norm", "acc_norm_lo", "acc_norm_hi"} <= set(ev["base"]["hhh"])
    assert {"diff", "lo", "hi", "p"} <= set(ev["final"]["vs_base"]["truthfulqa_mc"]["mc1"])


def test_decoding_change_reruns_queries_only_and_revert_restores_from_cache(pipe):
    before = (pipe.path / "data/queries/queries.jsonl").read_bytes()
    params = pipe.params
    params["queries"]["decoding"]["temperature"] = 0.5
    pipe.set_params(params)
    assert "queries.decoding.temperature" in pipe.sh("dvc", "params", "diff").stdout
    # Targeted: `dvc repro queries` runs queries and any stale upstream stage, not what follows it. The check
    # stage reads all of params.yaml, so it runs again too (its stamp does not change: nothing else reruns).
    changed = pipe.repro("queries")
    assert Pipeline.ran(changed) == ["check", "queries"]
    params["queries"]["decoding"]["temperature"] = 0.8
    pipe.set_params(params)
    back = pipe.repro("queries")
    assert Pipeline.ran(back) == []  # restored from DVC's run cache, not generated again
    assert "is cached - skipping run" in back.stdout
    assert (pipe.path / "data/queries/queries.jsonl").read_bytes() == before


def test_bad_params_stop_the_pipeline_naming_the_key(pipe):
    # A typo renames a key: the check stage, which runs before any other, validates the file against the
    # schema and names the typo, before DVC removes any stage's outputs; so does Snakemake run by hand.
    before = (pipe.path / "data/topics/topics.jsonl").read_bytes()
    good = pipe.params
    bad_params = pipe.params
    bad_params["topics"]["max_per_tpe"] = bad_params["topics"].pop("max_per_type")
    pipe.set_params(bad_params)
    try:
        dvc = pipe.repro("topics", check=False)
        smk = pipe.sh("snakemake", "-n", "--quiet", "all", check=False)
    finally:
        pipe.set_params(good)
    # Every key is required (params.yaml is the one source of values), so a renamed key is two errors.
    typo = ("error: params.yaml: 2 invalid settings: at topics: Additional properties are not allowed "
            "('max_per_tpe' was unexpected); at topics: 'max_per_type' is a required property")
    assert dvc.returncode != 0 and typo in dvc.stderr.splitlines()
    assert (pipe.path / "data/topics/topics.jsonl").read_bytes() == before
    assert smk.returncode != 0
    assert "at topics: Additional properties are not allowed ('max_per_tpe' was unexpected)" in smk.stdout + smk.stderr
    assert Pipeline.ran(pipe.repro()) == []  # the fixed file matches the last run again


def _align_records(pipe) -> list[dict]:
    return [r for name in ("aligned", "rejected")
            for r in read_jsonl(pipe.path / f"data/aligned/{name}.jsonl", allow_empty=True)]


def test_sigkill_mid_generation_then_repro_resumes_with_identical_records(pipe):
    out = pipe.path / "data/queries/queries.jsonl"
    before = out.read_bytes()
    journal = pipe.path / ".selfalign/journal/queries"
    proc = pipe.start("dvc", "repro", "--force", "--single-item", "queries")
    try:
        deadline = time.monotonic() + 300
        while not any(p.stat().st_size for p in journal.glob("*.jsonl")):  # a first batch is finished
            assert proc.poll() is None, "the stage ended before it could be killed"
            assert time.monotonic() < deadline, "no finished batch within 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # dvc, snakemake and the generating script at once
        proc.wait()
    assert not out.exists() or out.read_bytes() == before  # never a half-written output
    assert "queries" in pipe.sh("dvc", "status").stdout
    # Run the stage again (not from the run cache): it replays the journal and generates the rest.
    again = pipe.repro("--force", "--single-item", "queries")
    assert Pipeline.ran(again) == ["queries"]
    assert "batches already done" in again.stdout + again.stderr
    assert out.read_bytes() == before
    assert pipe.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_principle_edit_reruns_align_only_and_revert_restores_from_cache(pipe):
    path = pipe.path / "principles/principles.yaml"
    original = path.read_text()
    before = _align_records(pipe)
    path.write_text(original.replace("thinks carefully and draws conclusions", "reasons with care and draws conclusions"))
    try:
        assert "principles.5.text" in pipe.sh("dvc", "params", "diff").stdout
        status = pipe.sh("dvc", "status").stdout
        assert "align:" in status and "topics:" not in status and "queries:" not in status
        # Targeted at align (training the downstream models again is the slow part; the DAG test shows
        # they depend on align's output): nothing upstream runs, and what follows goes stale.
        edited = pipe.repro("align")
        assert Pipeline.ran(edited) == ["check", "align"]
        versions = {r["principles_version"] for r in _align_records(pipe)}
        stale = pipe.sh("dvc", "status").stdout
        assert "engrave:" in stale and "topics:" not in stale and "queries:" not in stale
    finally:
        path.write_text(original)
    assert len(versions) == 1 and versions != {r["principles_version"] for r in before}
    back = pipe.repro()
    assert Pipeline.ran(back) == []
    assert "Stage 'align' is cached - skipping run" in back.stdout
    assert _align_records(pipe) == before
    assert pipe.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."


def test_plan_lists_what_repro_would_run_with_time_and_memory(pipe):
    import jsonschema

    from pipeline import ROOT

    schema = json.loads((ROOT / "schemas/plan.schema.json").read_text())

    def plan(*args, check=True):
        p = pipe.sh("selfalign", "plan", "--json", *args, check=check)
        return json.loads(p.stdout), p.returncode

    assert plan()[0]["stages"] == [] and "Nothing to run" in pipe.sh("selfalign", "plan").stdout
    path = pipe.path / "principles/principles.yaml"
    original = path.read_text()
    path.write_text(original.replace("thinks carefully and draws conclusions", "reasons with care and draws conclusions"))
    try:
        edited, rc = plan()
    finally:
        path.write_text(original)
    jsonschema.validate(edited, schema)
    assert rc == 0 and edited["check"] and edited["problems"] == []
    assert [s["stage"] for s in edited["stages"]] == ["align", "engrave", "verbose", "verbose_clone", "eval"]
    # This folder's last run gives the rates, and the model's config (models/base) the memory.
    assert edited["rates"]["source"].startswith("this folder's last run")
    for s in edited["stages"]:
        assert s["seconds"] > 0 and s["memory"]["peak"] > 0 and s["measured"]["seconds"] > 0, s["stage"]
    align = edited["stages"][0]
    assert align["items_in"] == pipe.params["align"]["max_queries"]
    assert align["new_tokens_at_most"] == align["items_in"] * pipe.params["align"]["decoding"]["max_new_tokens"]
    # A setting that cannot run is an error before anything runs: training past the model's context.
    params = pipe.params
    try:
        pipe.set_params(params | {"train": params["train"] | {"max_length": 100_000}})
        bad, rc = plan(check=False)
    finally:
        pipe.set_params(params)
    assert rc == 1 and any("train.max_length=100000 exceeds the model's context" in p for p in bad["problems"])
    assert pipe.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    # The plan of the edit was kept (a plan of nothing is not): the report sets it beside the measured times.
    from selfalign.plan.plan import planned_vs_actual

    rows = planned_vs_actual(pipe.path)
    assert [r["stage"] for r in rows] == ["align", "engrave", "verbose", "verbose_clone", "eval"]
    assert all(r["actual_s"] > 0 and r["ratio"] > 0 for r in rows)


def test_every_record_traces_back_to_a_seed(pipe):
    from selfalign.audit.lineage import Index

    index = Index(pipe.path)
    generated = [n for n in index.nodes.values() if n.stage != "seed"]
    assert {n.stage for n in generated} >= {"topics", "queries", "align"}
    for node in generated:
        chain = index.chain(node.id)  # raises on an orphan id or a cycle
        assert any(n.file.startswith("data/seeds/") for _, n in chain), node.id
        assert all(n.stage == "seed" for _, n in chain if not n.parents)


def test_trace_cli_prints_the_chain_and_rejects_unknown_ids(pipe):
    aligned = read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True) or \
        read_jsonl(pipe.path / "data/aligned/rejected.jsonl")
    rid = aligned[0]["id"]
    out = pipe.sh("selfalign", "trace", rid, "--json")
    chain = json.loads(out.stdout)
    assert chain[0]["id"] == rid and chain[0]["stage"] == "align" and chain[0]["principles_version"]
    assert chain[-1]["stage"] == "seed" and chain[-1]["git_revision"]
    bad = pipe.sh("selfalign", "trace", "q-0000000000000000", check=False)
    assert bad.returncode == 1 and "no record with id 'q-0000000000000000'" in bad.stderr


def test_principle_ablation_runs_as_a_dvc_experiment(pipe):
    from selfalign.data import principles
    from selfalign.data.templates import Template
    from selfalign.stages import align

    every = principles.load_principles(pipe.path / "principles/principles.yaml")
    before = {r["principles_version"] for r in read_jsonl(pipe.path / "data/aligned/rejected.jsonl", allow_empty=True)
              + read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True)}
    exp = pipe.sh("dvc", "exp", "run", "-n", "no-4-7", "-S", "principles.exclude=[4,7]", "align")
    assert "Running stage 'align'" in exp.stdout
    rows = (pipe.path / "plots/principle_citations.csv").read_text().splitlines()
    assert len(rows) == 1 + 14 and not any(r.startswith(("4 (", "7 (")) for r in rows)
    # The prompt the stage renders under the experiment's params leaves out exactly principles 4 and 7.
    exclude = pipe.params["principles"]["exclude"]
    assert exclude == [4, 7]
    active, exemplars, version = principles.load_alignment_text(pipe.path / "principles/principles.yaml",
                                                 pipe.path / "principles/exemplars.yaml", exclude)
    prompt = align.render_context(Template(pipe.path / "templates/align.j2"), assistant="Sage", identity="x",
                                  principles=active, exemplars=exemplars, query="How do I boil an egg?")
    for p in every:
        assert (p.text in prompt) == (p.id not in (4, 7)), p.id
    after = {r["principles_version"] for r in read_jsonl(pipe.path / "data/aligned/rejected.jsonl", allow_empty=True)
             + read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True)}
    assert after == {version} and version not in before
    shown = pipe.sh("dvc", "exp", "show", "--no-pager", "--md").stdout
    assert "no-4-7" in shown
    # Back to the committed params: the workspace returns to the cached run.
    pipe.sh("git", "checkout", "--", "params.yaml")
    back = pipe.repro()
    assert Pipeline.ran(back) == [] and "Stage 'align' is cached - skipping run" in back.stdout


def test_push_to_a_remote_and_pull_into_an_empty_cache(pipe, tmp_path):
    outputs = ["data/queries/queries.jsonl", "data/aligned/aligned.jsonl", "models/final/model.safetensors"]
    before = {o: (pipe.path / o).read_bytes() for o in outputs}
    pipe.sh("dvc", "remote", "add", "-f", "-d", "store", str(tmp_path / "store"))
    pipe.sh("dvc", "push", "--run-cache")
    for d in ("models", "data/topics", "data/queries", "data/aligned", "data/verbose", "data/eval_results", ".dvc/cache"):
        shutil.rmtree(pipe.path / d)
    pipe.sh("dvc", "pull", "--run-cache")
    assert pipe.sh("dvc", "status").stdout.strip() == "Data and pipelines are up to date."
    assert {o: (pipe.path / o).read_bytes() for o in outputs} == before


def test_report_renders_the_funnel_plots_and_data_docs(pipe):
    pipe.sh("selfalign", "plan", "--stages", "align", "eval")
    out = pipe.sh("selfalign", "report", "--out", "report")
    page = (pipe.path / "report/index.html").read_text()
    assert "wrote" in out.stdout and "Funnel" in page
    for png in ("funnel.png", "filters.png", "lengths.png", "citations.png", "loss.png", "eval.png"):
        assert f'src="{png}"' in page and (pipe.path / "report" / png).read_bytes()[:4] == b"\x89PNG", png
    stats = json.loads((pipe.path / "report/report.json").read_text())
    funnel = {(r["stage"], r["step"]): r["count"] for r in stats["funnel"]}
    queries = read_jsonl(pipe.path / "data/queries/queries.jsonl")
    assert funnel[("queries", "queries kept")] == len(queries)
    assert funnel[("align", "answers kept (engraving set)")] == len(
        read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True))
    assert {r["checkpoint"] for r in stats["eval"]} == {"base", "engraved", "final"}
    assert {r["task"] for r in stats["eval"]} >= {"xstest", "fidelity", "fidelity/xstest"}
    # The mix by origin, step by step: the kept set is engrave's training set, split by its records' source.
    mix = {r["step"]: r for r in stats["mix"]}
    kept = read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True)
    engraving = mix["align: kept = engrave's training set"]
    assert (engraving["self_instruct"], engraving["red_team"]) == (
        sum(r["source"] == "self_instruct" for r in kept), sum(r["source"] == "red_team" for r in kept))
    assert mix["align: answered"]["red_team_share"] == 0.5 and "Mix by origin" in page
    assert sum(r["citations"] for r in stats["citations"]) == sum(
        len(r["cited"]) for r in read_jsonl(pipe.path / "data/aligned/aligned.jsonl", allow_empty=True))
    # The data docs hold a validation page for each dataset with expectations, and the rules report exists.
    docs = pipe.path / "report/data_docs/gx/uncommitted/data_docs/local_site"
    assert (docs / "index.html").exists()
    assert {p.name for p in (docs / "expectations").rglob("*.html")} >= {"topics.html", "queries.html"}
    assert {p.name for p in (docs / "validations").rglob("*.html")} >= {"selfalign-topics.html", "selfalign-queries.html"}
    assert "snakemake" in (pipe.path / "report/rules.html").read_text()[:200000].lower()
    # Everything renders offline: no page of the data docs loads a script or a style from the network.
    import re

    for html in docs.rglob("*.html"):
        assert not re.search(r"<(?:script|link)[^>]+(?:src|href)=[\"']?https?:", html.read_text()), html
    assert (docs / "static/offline/bootstrap.min.css").exists()
    # The evaluation section: intervals, paired differences against base, and the detector's agreement.
    assert all(r["ci95"] for r in stats["eval"]) and any(r["p"] is not None for r in stats["eval"])
    assert {r["task"] for r in stats["eval"]} >= {"hhh", "truthfulqa_mc", "truthfulqa", "xstest"}
    assert stats["refusal_detector"][0]["n"] == 450 and "Refusal detector" in page
    # Quality: citation diversity of the kept thoughts, topics per type, kept and rejected examples.
    figures = {(r["stage"], r["figure"]) for r in stats["quality"]["per_stage"]}
    assert {("align", "citation_entropy_bits"), ("topics", "types_covered")} <= figures
    assert sum(stats["quality"]["per_type"].values()) == len(read_jsonl(pipe.path / "data/topics/topics.jsonl"))
    verdicts = {(r["stage"], r["verdict"].split(":")[0]) for r in stats["examples"]}
    assert {("queries", "kept"), ("queries", "rejected")} <= verdicts and "Examples" in page
    # The last plan made here (the one run before the report, above), beside the measured times.
    assert [r["stage"] for r in stats["timing"]] == ["align", "eval"] and all(r["actual_s"] > 0 for r in stats["timing"])
    assert "Time: planned and measured" in page


def test_plots_show_renders_offline(pipe):
    """`dvc plots show` writes a page that loads nothing from the network: the vega libraries are inlined
    (.dvc/plots/offline.html), eval bars carry intervals and chance, principles are in numeric order."""
    import re

    out = pipe.sh("dvc", "plots", "show", "-o", "plots_html")
    page = (pipe.path / "plots_html/index.html").read_text()
    assert "index.html" in out.stdout
    assert not re.search(r"<(?:script|link)[^>]+(?:src|href)=[\"']?https?:", page)
    assert "vegaEmbed(" in page and "vegaLite" in page and '"lower"' in page and '"chance"' in page
    citations = [line.split(",")[0] for line in (pipe.path / "plots/principle_citations.csv").read_text().splitlines()[1:]]
    assert [int(c.split()[0]) for c in citations] == sorted(int(c.split()[0]) for c in citations)
