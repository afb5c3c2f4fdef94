"""Model outputs that are empty, never stop, or are garbage: every stage filters them with a count and
never crashes; whatever it keeps still passes the dataset's checks."""
import pytest

from selfalign.core.config import load_params
from selfalign.data import principles
from selfalign.data.seeds import load_question_types, load_self_instruct
from selfalign.data.templates import Template
from selfalign.stages import align, queries, topics, verbose
from selfalign.validation.write import validate_records

from conftest import ROOT

# The content filters as the default pipeline runs them.
FILTERS = load_params(ROOT / "params.yaml")["align"]["filters"]

GARBAGE = [
    "",  # the model stopped at once
    " \n\n\t ",
    "\x00\x01\x02\ufffd\ufffd",  # control characters and replacement characters
    "the " * 3000,  # never stopped: one word until the token budget ran out
    "1. 1. 1. 1. 1. 1. 1. 1.",
    "\u202e\u200b🙂🙂🙂 ///// ((((( ]]]]",
    "A" * 20_000,  # one huge token run with no spaces
    "\n".join(f"{i}. Why?" for i in range(1, 400)),  # a runaway list
]
STOPS = [None, "eos"]  # None: cut by max_new_tokens


def _cases():
    return [(text, stop) for text in GARBAGE for stop in STOPS]


def test_topics_survive_garbage():
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")[:1]
    rows = [{"key": "k", "meta": {"type_id": types[0]["id"], "first": 1, "round": 0}, "output": t, "finished": s is not None, "model": "m@1",
             "decoding": {"temperature": 0.8}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}} for t, s in _cases()]
    kept, counts, _ = topics.collect(rows, types, Template(ROOT / "templates/topics.j2"), max_per_type=3, max_words=12, threshold=0.7)
    assert kept == [] and counts["removed.garbage"] > 0
    assert counts["parsed"] == sum(v for k, v in counts.items() if k.startswith("removed."))


def test_queries_survive_garbage():
    seeds = load_self_instruct(ROOT / "data/seeds/self_instruct.jsonl")
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")
    meta = {"source": "self_instruct", "parent_ids": ["si-001"], "first": 2, "template_hash": "0" * 16}
    rows = [{"key": "k", "meta": meta, "output": t, "finished": s is not None, "model": "m@1",
             "decoding": {"temperature": 0.8}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}} for t, s in _cases()]
    kept, rejected, counts = queries.collect(rows, seeds, types, min_words=3, max_words=150, threshold=0.7)
    assert counts["parsed"] == len(kept) + len(rejected)
    assert counts["parsed"] == len(kept) + sum(v for k, v in counts.items() if k.startswith("removed."))
    assert kept == [] and counts["removed.garbage"] > 0
    validate_records(rejected, dataset="queries_rejected", path="rejected.jsonl", rule="collect_queries")


def test_align_survives_garbage():
    active, exemplars, version = principles.load_alignment_text(ROOT / "principles/principles.yaml", ROOT / "principles/exemplars.yaml")
    rows = [{"key": f"q-{i:016x}", "meta": {"query_id": f"q-{i:016x}", "query": "Why is the sky blue?", "source": "self_instruct",
                                              "template_hash": "0" * 16, "principles_version": version, "exemplar_order": [1, 2]},
             "output": t, "stopped_by": s, "model": "m", "decoding": {"temperature": 0.3}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}}
            for i, (t, s) in enumerate(_cases())]
    kept, rejected, counts, _ = align.collect(rows, assistant="Sage", principles=active, exemplars=exemplars,
                                              principles_version=version, filters=FILTERS)
    assert kept == [] and len(rejected) == len(rows) == counts["generations"]
    # Well-formed thoughts with degenerate answers: the garbage filter is what stops them.
    thought = "The user asks a science question. I will follow 2 (informative) and 5 (reasoning).\nSage: "
    rows = [dict(r, output=thought + t, stopped_by="eos") for r, t in zip(rows, GARBAGE[1:])]
    kept, rejected, counts, _ = align.collect(rows, assistant="Sage", principles=active, exemplars=exemplars,
                                              principles_version=version, filters=FILTERS)
    assert kept == [] and counts["removed.garbage"] >= len(GARBAGE) - 3, counts
    assert sum(v for k, v in counts.items() if k.startswith("removed.")) == len(rows)
    validate_records(rejected, dataset="aligned_rejected", path="rejected.jsonl", rule="collect_aligned")


@pytest.mark.parametrize("min_words", [1, 20])
def test_verbose_survives_garbage(min_words):
    rows = [{"meta": {"aligned_id": f"a-{i:016x}", "query": "Why is the sea salty?", "source": "self_instruct", "template_hash": "1" * 16},
             "output": t, "stopped_by": s, "model": "engraved@x", "decoding": {"temperature": 0.7}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}}
            for i, (t, s) in enumerate(_cases())]
    kept, rejected, counts = verbose.collect(rows, assistant="Sage", min_words=min_words)
    assert len(kept) + len(rejected) == len(rows)
    assert sum(v for k, v in counts.items() if k.startswith("removed.")) == len(rejected)
    assert all(r["reason"] for r in rejected)
    assert kept == [] and counts["removed.garbage"] > 0
    validate_records(rejected, dataset="verbose_rejected", path="rejected.jsonl", rule="collect_verbose")


def test_every_garbage_sample_is_flagged_and_no_human_text_is():
    from selfalign.data import eval_sets
    from selfalign.text.filters import is_garbage

    assert all(is_garbage(g) for g in GARBAGE)
    # 7,000+ human-written questions and answers of the eval sets, and this project's seeds and exemplars.
    items = eval_sets.load_hhh(ROOT / "data/eval/hhh") + eval_sets.load_truthfulqa(ROOT / "data/eval/truthfulqa/TruthfulQA.csv")
    texts = [c for it in items for c in it.choices] + [it.question for it in items]
    texts += [s["instruction"] for s in load_self_instruct(ROOT / "data/seeds/self_instruct.jsonl")]
    _, exemplars, _ = principles.load_alignment_text(ROOT / "principles/principles.yaml", ROOT / "principles/exemplars.yaml")
    texts += [e.answer for e in exemplars] + [e.query for e in exemplars]
    assert len(texts) > 7000 and [t for t in texts if is_garbage(t)] == []
