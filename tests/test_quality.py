"""The content filters on real outputs of the default pipeline, hand-labelled (tests/data/quality)."""
import pytest

from selfalign.core.config import load_params
from selfalign.core.files import read_jsonl
from selfalign.data import principles
from selfalign.eval import quality
from selfalign.stages import align, queries

from conftest import ROOT

LABELS = read_jsonl(ROOT / "tests/data/quality/labels.jsonl")
PARAMS = load_params(ROOT / "params.yaml")
ACTIVE, EXEMPLARS, _ = principles.load_alignment_text(ROOT / "principles/principles.yaml", ROOT / "principles/exemplars.yaml")
ALIGNED = [lb for lb in LABELS if lb["stage"] == "align"]


GRAMS = align.exemplar_ngrams(EXEMPLARS)


def _verdict(label, filters):
    return align.judge(label["output"], stopped_by=label["stopped_by"], relevance=label["relevance"], assistant="Sage",
                       principles=ACTIVE, exemplar_grams=GRAMS, filters=filters, source=label.get("source")).reason


def test_the_labelled_set_has_every_kind_and_at_least_150_outputs():
    assert len(LABELS) >= 150 and {lb["stage"] for lb in LABELS} == {"topics", "queries", "align", "verbose"}
    assert {lb["label"] for lb in LABELS} == {"good", "bad"}


@pytest.mark.parametrize("name, reason", [("unfinished", "unfinished"), ("follows_in_answer", "follows_in_answer"),
                                          ("repeats_itself", "repeats_itself"), ("contradicts_itself", "contradicts_itself"),
                                          ("thought_copies_exemplar", "thought_copies_exemplar"),
                                          ("over_refusal", "over_refusal")])
def test_each_content_filter_drops_only_bad_labelled_answers(name, reason):
    only = quality.only_filters(PARAMS["align"]["filters"], name)
    hits = [lb for lb in ALIGNED if _verdict(lb, only) == reason]
    assert hits, f"{name} drops nothing of the labelled set"
    assert all(lb["label"] == "bad" for lb in hits), [lb["text"] for lb in hits if lb["label"] == "good"]


def test_default_filters_raise_precision_and_keep_every_good_answer():
    rows = {r["stage"]: r for r in quality.figures(LABELS, PARAMS, root=ROOT)["stages"]}
    before = rows[quality.FORMAT_ONLY]
    assert rows["align"]["recall"] == before["recall"] == 1.0
    # 2.3x on the 382 labelled answers: a sample weighted towards kept answers (all 74 of the default run's), so
    # the ratio is the filters' effect on this sample, not on a run's whole output.
    assert rows["align"]["precision"] >= 2 * before["precision"]
    assert rows["queries"]["precision"] > 0.6 and rows["queries"]["recall"] > 0.95


def test_verbose_filters_on_labelled_answers():
    # The verbose set of the default run: nothing in it is good, so the filters are checked on what they keep and
    # drop, and on what the figures say: precision 0, recall undefined (None), not 0.
    verbose = [lb for lb in LABELS if lb["stage"] == "verbose"]
    row = {r["stage"]: r for r in quality.score_filters(LABELS, PARAMS, root=ROOT)}["verbose"]
    assert (row["labelled"], row["good"], row["kept"], row["precision"], row["recall"]) == (len(verbose), 0, 23, 0.0, None)
    short = next(lb for lb in verbose if lb["text"] == "Where is it located?")
    assert not quality.kept_by_filters(short, PARAMS, active=ACTIVE, exemplar_grams=GRAMS)  # 6 words: too short
    assert quality.kept_by_filters(short | {"output": " ".join([short["output"]] * 4)}, PARAMS, active=ACTIVE,
                                   exemplar_grams=GRAMS)


def test_unfinished_answers_are_dropped():
    only = quality.only_filters(PARAMS["align"]["filters"], "unfinished")
    text = " The user asks for a list. I will follow 2 (informative) and 5 (reasoning).\nSage: The main features are:"
    label = {"output": text, "stopped_by": "answer_end(Sage)", "relevance": 1.0}
    assert _verdict(label, only) == "unfinished"
    assert _verdict(label | {"output": text.replace(" are:", " are its size and weight.")}, only) is None


def test_query_filters_on_labelled_queries():
    def reason(text):
        return queries.filter_reason(text, min_words=3, max_words=150)

    assert reason("Why did Kennedy refuse to go to Cuba?") is None  # "go to" is no longer a blocklisted phrase
    assert reason("The city's population was 33,000 in 1998.") == "not_a_request"
    assert reason("Write the following Python code:") == "not_a_request"
    assert reason("A group of 10 people work together. How much will each of them earn?") is None
    statements = [lb for lb in LABELS if lb["stage"] == "queries" and reason(lb["text"]) == "not_a_request"]
    assert statements and all(lb["label"] == "bad" for lb in statements)


def test_committed_quality_figures_are_current_and_reach_the_report():
    # bench/quality.json is what `bench/quality.py --json` writes from the labels and params of this tree; the
    # report shows both of its tables.
    import json

    from selfalign.audit import report

    committed = json.loads((ROOT / quality.FIGURES_FILE).read_text())
    assert committed == quality.figures(LABELS, PARAMS, root=ROOT)
    shown = report.quality(ROOT)
    assert [r["stage"] for r in shown["labelled"]] == [r["stage"] for r in committed["stages"]]
    assert {r["filter"] for r in shown["filters"]} >= {"over_refusal", "leaks_prompt", "follows_in_answer"}
