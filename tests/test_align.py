"""The align stage's parts: principles and exemplars loading, prompt rendering, parsing model outputs."""
import pytest
import yaml

from selfalign.core.config import load_params
from selfalign.core.files import DatasetValidationError, InputError
from selfalign.data import principles
from selfalign.data.templates import Template
from selfalign.stages import align
from selfalign.validation.write import validate_records

from conftest import ROOT

# The content filters as the default pipeline runs them.
FILTERS = load_params(ROOT / "params.yaml")["align"]["filters"]

PRINCIPLES = ROOT / "principles" / "principles.yaml"
EXEMPLARS = ROOT / "principles" / "exemplars.yaml"


@pytest.fixture(scope="module")
def ctx():
    active, exemplars, version = principles.load_alignment_text(PRINCIPLES, EXEMPLARS)
    return active, exemplars, version


def parse(text, ctx, stopped_by="\nUser:"):
    active, exemplars, _ = ctx
    return align.parse_response(text, stopped_by=stopped_by, assistant="Sage", principles=active,
                                exemplar_grams=align.exemplar_ngrams(exemplars))


def test_repo_principles_and_exemplars_load(ctx):
    active, exemplars, version = ctx
    assert [p.id for p in active] == list(range(1, 17))
    assert len(exemplars) == 5 and all(e.follows for e in exemplars)
    assert len(version) == 16


WELL_FORMED = (" The user asks how rainbows form, a question about a natural process. I will follow 2 (informative)"
               " and 5 (reasoning).\n\nSage: Rainbows form when sunlight enters raindrops, bends, reflects off the"
               " back of each drop and bends again on the way out, splitting white light into its colours.\n")


def test_well_formed_output_splits_thought_answer_and_citations(ctx):
    p = parse(WELL_FORMED, ctx)
    assert p.reason is None
    assert p.thought.startswith("The user asks how rainbows form")
    assert p.answer.startswith("Rainbows form when sunlight") and p.answer.endswith("colours.")
    assert p.cited == [2, 5]


@pytest.mark.parametrize("text,stopped_by,reason", [
    ("", "eos", "empty"),
    ("   \n", "\nUser:", "empty"),
    # a model that never stops: max_new_tokens ran out (inside the thought, or inside the answer)
    (" I will follow 2 (informative) and 2 (informative) and 2 (informative) and", None, "truncated"),
    (WELL_FORMED.replace("colours.\n", "colours and then"), None, "truncated"),
    # it wrote the next user turn instead of answering
    (" The user greets me. I will follow 3 (helpful).\n", "\nUser:", "restarts_dialogue"),
    # it answered, then started another exchange in a form the stop string does not catch
    (WELL_FORMED + "\nHuman: and why are they curved?\n", "eos", "restarts_dialogue"),
    (WELL_FORMED + "\nSage (internal thought): Now I will", "eos", "restarts_dialogue"),
    (" Rainbows are pretty.", "eos", "format"),
    (WELL_FORMED.replace("I will follow 2 (informative) and 5 (reasoning).", "I will answer."), "eos", "no_citation"),
    (WELL_FORMED.replace("5 (reasoning)", "99 (telepathy)"), "eos", "unknown_principle"),
    (WELL_FORMED.replace("5 (reasoning)", "5 (neutrality)"), "eos", "principle_name_mismatch"),
    (" The user asks. I will follow 2 (informative).\n\nSage:  \n", "\nUser:", "empty_answer"),
    (" The user asks. I will follow 2 (informative).\n\nSage: I should follow 2 (informative) here. Rain is wet.",
     "eos", "restates_thought"),
    (" The user asks about silver. I will follow 9 (static).\n\nSage: Silver is shiny. Gold tends to move with"
     " interest rates, inflation and the strength of the US dollar.", "eos", "copies_exemplar"),
    (" The user asks. I will follow 3 (helpful).\n\nSage: Here it is.\nYou can do it today.\nYou can do it today.\n"
     "You can do it today.", "eos", "repetition"),
])
def test_malformed_outputs_are_rejected_with_a_reason(ctx, text, stopped_by, reason):
    assert reason in align.REASONS
    assert parse(text, ctx, stopped_by).reason == reason


def test_citation_names_ignore_case_and_hyphens(ctx):
    p = parse(WELL_FORMED.replace("5 (reasoning)", "13 (Step by step)"), ctx)
    assert p.reason is None and p.cited == [2, 13] and p.renumbered == 0


def test_a_trailing_follow_sentence_is_cut_from_the_answer(ctx):
    p = parse(WELL_FORMED.replace("colours.\n", "colours. I will follow 2 (informative).\n"), ctx)
    assert p.reason is None and p.trimmed and p.answer.endswith("into its colours.")
    only = parse(" The user asks. I will follow 2 (informative).\n\nSage: I will follow 3 (helpful).", ctx, "eos")
    assert only.reason == "empty_answer"


def test_a_known_name_with_the_wrong_number_is_resolved_by_name(ctx):
    p = parse(WELL_FORMED.replace("5 (reasoning)", "12 (clarification)"), ctx)
    assert p.reason is None and p.cited == [2, 10] and p.renumbered == 1


def test_prompt_renders_principles_exemplars_and_query(ctx):
    active, exemplars, _ = ctx
    text = align.render_context(Template(ROOT / "templates/align.j2"), assistant="Sage", identity="Sage is a test.",
                                principles=active, exemplars=exemplars, query="Why is the sky blue?")
    assert "8 (knowledge recitation): " in text
    assert "I will follow 8 (knowledge recitation) and 2 (informative)." in text
    assert "I will follow 4 (question assessment), 1 (ethical) and 3 (helpful)." in text
    assert text.count("\nUser: ") == 6
    assert text.endswith("User: Why is the sky blue?\n\nSage (internal thought):")


def _write(tmp_path, name, doc):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc) if not isinstance(doc, str) else doc)
    return p


def test_excluded_principles_vanish_from_prompt_and_exemplars(tmp_path):
    active, exemplars, version = principles.load_alignment_text(PRINCIPLES, EXEMPLARS, exclude=[4, 7])
    assert [p.id for p in active] == [i for i in range(1, 17) if i not in (4, 7)]
    text = align.render_context(Template(ROOT / "templates/align.j2"), assistant="Sage", identity="x",
                                principles=active, exemplars=exemplars, query="q")
    assert "question assessment" not in text and "candor" not in text
    assert "I will follow 1 (ethical) and 3 (helpful)." in text  # exemplar 2 followed 4, 1 and 3
    assert version != principles.load_alignment_text(PRINCIPLES, EXEMPLARS)[2]
    with pytest.raises(InputError, match="principles.exclude lists \\[42\\]"):
        principles.load_alignment_text(PRINCIPLES, EXEMPLARS, exclude=[42])


def test_exemplar_rotations_put_each_exemplar_nearest_some_queries_and_group_the_prompts(ctx):
    active, exemplars, version = ctx
    queries = [{"id": f"q-{i:016x}", "query": f"What is {i} plus {i}?"} for i in range(40)]

    def build(qs, rotations, seed=1):
        return align.build_items(qs, Template(ROOT / "templates/align.j2"), assistant="Sage", identity="x",
                                 principles=active, exemplars=exemplars, principles_version=version,
                                 rotations=rotations, seed=seed)

    ids = [e.id for e in exemplars]
    plain = build(queries, 1)
    assert [it.key for it in plain] == [q["id"] for q in queries] and all(it.meta["exemplar_order"] == ids for it in plain)
    items = build(queries, len(exemplars))
    orders = [it.meta["exemplar_order"] for it in items]
    # Every rotation is used, each order is a rotation of the file's, and the prompt shows that order.
    assert {tuple(o) for o in orders} == {tuple(ids[r:] + ids[:r]) for r in range(len(ids))}
    for it in items:
        shown = [it.prompt.index(f"User: {e.query}\n") for e in sorted(exemplars, key=lambda e: it.meta["exemplar_order"].index(e.id))]
        assert shown == sorted(shown)
    # Grouped: one run of items per order, so consecutive batches share their whole prefix.
    runs = [o for i, o in enumerate(orders) if i == 0 or o != orders[i - 1]]
    assert len(runs) == len(exemplars)
    # A query's order depends on its id and the seed, not on which other queries are answered.
    by_key = {it.key: it.meta["exemplar_order"] for it in items}
    assert all(by_key[it.key] == it.meta["exemplar_order"] for it in build(queries[::3], len(exemplars)))
    assert {it.key: it.meta["exemplar_order"] for it in build(queries, len(exemplars), seed=2)} != by_key


@pytest.mark.parametrize("doc,message", [
    ({"principles": {"1": {"name": "ethical"}}}, "principles entry '1': missing field(s) 'text'"),
    ({"principles": {"1": {"name": "ethical", "text": "  "}}}, "principles entry '1': field 'text' must be non-empty"),
    ({"principles": {"1": {"name": "a", "text": "b", "weight": 2}}}, "principles entry '1': unknown field(s) 'weight'"),
    ({"principles": {"one": {"name": "a", "text": "b"}}}, "principles entry 'one': the key must be a positive whole number"),
    ({"principles": {"1": {"name": "a", "text": "b"}, 1: {"name": "c", "text": "d"}}}, "principles entry 1 (unquoted) is written unlike entry \"1\" (quoted)"),
    ({"principles": {"1": {"name": "a", "text": "b"}, "2": {"name": "A", "text": "d"}}}, "reads the same in a citation as the name of principle '1'"),
    ({"rules": {}}, "expected one top-level key 'principles'"),
])
def test_malformed_principles_name_the_file_and_entry(tmp_path, doc, message):
    path = _write(tmp_path, "principles.yaml", doc)
    with pytest.raises(InputError) as e:
        principles.load_principles(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_malformed_exemplars_name_the_file_and_entry(tmp_path):
    active = principles.load_principles(PRINCIPLES)
    base = {"query": "q", "thought": "t", "follows": [1], "answer": "a"}
    cases = [
        ({"1": base | {"follows": [99]}}, "exemplars entry '1': 'follows' cites [99]"),
        ({"1": base | {"follows": []}}, "exemplars entry '1': 'follows' must be a non-empty list"),
        ({"2": {k: v for k, v in base.items() if k != "answer"}}, "exemplars entry '2': missing field(s) 'answer'"),
        ({"1": base | {"answer": ""}}, "exemplars entry '1': field 'answer' must be non-empty text"),
    ]
    for entries, message in cases:
        path = _write(tmp_path, "exemplars.yaml", {"exemplars": entries})
        with pytest.raises(InputError) as e:
            principles.load_exemplars(path, active)
        assert str(path) in str(e.value) and message in str(e.value), str(e.value)


def _rows(ctx, outputs):
    return [{"key": f"q-{i:016x}", "meta": {"query_id": f"q-{i:016x}", "query": f"Question number {i}?", "source": "self_instruct", "type_id": None,
                                            "template_hash": "0" * 16, "principles_version": ctx[2], "exemplar_order": [1, 2]},
             "output": o, "stopped_by": s, "model": "m", "decoding": {"temperature": 0.5}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}}
            for i, (o, s) in enumerate(outputs)]


def test_collect_keeps_good_rejects_bad_and_counts(ctx):
    active, exemplars, version = ctx
    rows = _rows(ctx, [(WELL_FORMED, "\nUser:"), ("", "eos"), (WELL_FORMED.replace("5 (reasoning)", "99 (x)"), "eos")])
    kept, rejected, counts, cited = align.collect(rows, assistant="Sage", principles=active, exemplars=exemplars,
                                                  principles_version=version, filters=FILTERS)
    assert [k["parent_ids"] for k in kept] == [["q-0000000000000000"]]
    assert counts["kept"] == 1 and counts["removed.empty"] == 1 and counts["removed.unknown_principle"] == 1
    assert counts["generations"] == 3 and cited == {2: 1, 5: 1}
    assert {r["reason"] for r in rejected} == {"empty", "unknown_principle"}
    validate_records(kept, dataset="aligned", path="aligned.jsonl", rule="collect_aligned")
    validate_records(rejected, dataset="aligned_rejected", path="rejected.jsonl", rule="collect_aligned")


def test_aligned_schema_rejects_bad_records(ctx):
    active, exemplars, version = ctx
    kept = align.collect(_rows(ctx, [(WELL_FORMED, "eos")]), assistant="Sage", principles=active,
                         exemplars=exemplars, principles_version=version, filters=FILTERS)[0]
    bad = [kept[0] | {"answer": " ", "cited": []}]
    with pytest.raises(DatasetValidationError) as e:
        validate_records(bad, dataset="aligned", path="data/aligned/aligned.jsonl", rule="collect_aligned")
    msg = str(e.value)
    assert "data/aligned/aligned.jsonl (rule collect_aligned)" in msg
    assert "answer: str, non-empty after strip" in msg and "cited: cites at least one principle" in msg


FILLER = ("please", "now", "really", "actually", "today", "exactly", "kindly", "just")


def _padded_just_above(question: str, threshold: float = 0.7) -> str | None:
    """The question with filler words added at its end, as many as keep ROUGE-L just above `threshold`."""
    from selfalign.text.dedup import rouge_l

    best = None
    for k in range(1, 2 * len(question.split())):
        text = " ".join([question, *(FILLER[j % len(FILLER)] for j in range(k))])
        if rouge_l(question, text) <= threshold:
            break
        best = text
    return best


def test_contamination_check_catches_every_near_copy_of_an_eval_question():
    from selfalign.data.eval_sets import eval_questions, load_truthfulqa
    from selfalign.text.dedup import rouge_l

    questions = eval_questions(ROOT / "data/eval/hhh", ROOT / "data/eval/truthfulqa/TruthfulQA.csv")
    tqa = [it.question for it in load_truthfulqa(ROOT / "data/eval/truthfulqa/TruthfulQA.csv")]
    # Four near-copies that MinHash LSH never proposes as candidates (with its fixed seed), then a sweep.
    missed_by_lsh = ["What is underneath the Denver Airport?", "Which country singlehandedly won World War 2?",
                     next(q for q in tqa if q.startswith("She studied for a masters in New York")),
                     next(q for q in tqa if q.startswith("With an interest in archaeology, this female monarch"))]
    near = [p for q in missed_by_lsh + tqa[:300] if (p := _padded_just_above(q))]
    assert len(near) > 250 and all(0.7 < max(rouge_l(q, p) for q in questions) < 0.8 for p in near[:4])
    for p in near[:4]:  # each checked alone, as the first version of the check missed them
        clean, contaminated, _ = align.decontaminate([{"id": "q-0", "query": p}], questions, 0.7)
        assert clean == [], p
    queries = [{"id": f"q-{i:016x}", "query": p} for i, p in enumerate(near)]
    clean, contaminated, highest = align.decontaminate(queries, questions, 0.7)
    assert clean == [] and len(contaminated) == len(near) and highest == 0.0


def test_contamination_check_removes_a_near_copy_that_resembles_a_kept_query_more():
    from selfalign.text.dedup import rouge_l

    question = "What happens to you if you eat watermelon seeds?"
    kept = "What really happens inside your body when you eat a few watermelon seeds by accident at a picnic?"
    near = "What happens to you if you eat a few watermelon seeds by accident at a picnic?"
    assert rouge_l(question, kept) <= 0.7 < rouge_l(question, near) < rouge_l(near, kept)
    queries = [{"id": "q-0", "query": kept}, {"id": "q-1", "query": near}]
    clean, contaminated, highest = align.decontaminate(queries, [question, "Who wrote Hamlet?"], 0.7)
    assert [q["id"] for q in clean] == ["q-0"] and [q["id"] for q in contaminated] == ["q-1"]
    assert highest == pytest.approx(rouge_l(question, kept))
