"""The data mix by origin, the two filters of what an answer would teach (prompt leakage, over-refusal), and
the engraving-fidelity agreement: real stage code on small inputs."""
import copy
import random

import pytest

from selfalign.core.config import load_params
from selfalign.core.files import InputError
from selfalign.data import principles
from selfalign.eval import fidelity
from selfalign.stages import align, mix, queries, verbose
from selfalign.text.leakage import leak

from conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")
FILTERS = PARAMS["align"]["filters"]
ACTIVE, EXEMPLARS, VERSION = principles.load_alignment_text(ROOT / "principles/principles.yaml",
                                                            ROOT / "principles/exemplars.yaml")
NAMES = [p.name for p in ACTIVE]
THOUGHT = " The user asks a question. I will follow 2 (informative) and 5 (reasoning).\n\nSage: "


def pool(si: int, rt: int) -> list[dict]:
    return ([{"id": f"q-si{i:04d}", "query": f"Explain topic {i}.", "source": "self_instruct", "type_id": None}
             for i in range(si)]
            + [{"id": f"q-rt{i:04d}", "query": f"Red question {i}?", "source": "red_team", "type_id": "rt-01"}
               for i in range(rt)])


def test_stratified_sample_reaches_the_planned_share_and_keeps_it_when_an_origin_is_short():
    rng = random.Random(0)
    got = mix.counts(mix.stratified_sample(pool(300, 300), 100, 0.25, rng))
    assert (got["self_instruct"], got["red_team"]) == (75, 25)
    # 40 self-instruct queries cannot be 75% of 100: all 40 are taken and red-team is cut to keep 25%.
    got = mix.counts(mix.stratified_sample(pool(40, 300), 100, 0.25, rng))
    assert (got["self_instruct"], got["red_team"]) == (40, 13) and abs(got["red_team_share"] - 0.25) < 0.01
    assert len(mix.stratified_sample(pool(40, 300), 100, None, rng)) == 100  # null: the pool's own mix
    with pytest.raises(InputError, match=r"align.red_team_share: 0.25 asks for 25 red_team queries of 100, and the "
                                         r"query pool has none"):
        mix.stratified_sample(pool(300, 0), 100, 0.25, rng)


def test_held_out_queries_never_reach_the_answered_sample_and_are_the_same_every_time():
    queries_ = pool(200, 100)
    answered, held = align.select_queries(queries_, 80, 7, red_team_share=0.25, heldout=20)
    assert not {q["id"] for q in answered} & {q["id"] for q in held}
    assert mix.counts(held)["red_team"] == 5 and mix.counts(answered)["red_team"] == 20
    assert (answered, held) == align.select_queries(list(reversed(queries_)), 80, 7, red_team_share=0.25, heldout=20)
    # The eval stage finds the same held-out queries from the params alone.
    p = copy.deepcopy(PARAMS) | {"seed": 7}
    p["align"] |= {"max_queries": 80, "red_team_share": 0.25, "heldout_queries": 20, "contamination_threshold": 0.7}
    assert fidelity.heldout_queries(queries_, ["An unrelated evaluation question about tides?"], p) == held


def test_auto_self_instruct_prompts_follow_the_align_sample():
    p = copy.deepcopy(PARAMS)
    p["queries"] |= {"self_instruct_prompts": "auto", "self_instruct_yield": 1.25}
    p["align"] |= {"max_queries": 512, "heldout_queries": 64, "red_team_share": 0.25}
    assert queries.self_instruct_prompt_count(p) == 346  # 576 x 0.75 / 1.25, rounded up
    p["align"]["max_queries"] = 1024
    assert queries.self_instruct_prompt_count(p) > 600
    p["queries"]["self_instruct_prompts"] = 24
    assert queries.self_instruct_prompt_count(p) == 24


@pytest.mark.parametrize("answer, kind", [
    ("Sage (internal thought): the user wants a poem.", "thought_marker"),
    ("Here is the poem. I will follow 15 (creative) here.", "follows_rules"),
    ("Rainbows form in rain, as 2 (informative) asks me to explain.", "principle_citation"),
    ("By principle 7 I should say I am unsure.", "principle_number"),
    ("I am not sure of the date (candor).", "principle_name"),
    ("Paris is the capital.\nUser: and of Spain?", "next_turn"),
])
def test_leaks_are_named(answer, kind):
    assert leak(answer, assistant="Sage", principle_names=NAMES) == kind


def test_clean_answers_do_not_leak():
    for answer in ("Rainbows form when sunlight is refracted (bent) inside raindrops.",
                   "Follow the recipe in 3 steps: mix, knead (ten minutes) and bake.",
                   "I will follow up with more detail if you like."):
        assert leak(answer, assistant="Sage", principle_names=NAMES) is None, answer


def _row(query_id, output, source, type_id=None, finished=True):
    return {"key": query_id, "finished": finished, "meta": {"query_id": query_id, "query": "A question?", "source": source, "type_id": type_id,
                                      "template_hash": "0" * 16, "exemplar_order": [1, 2]},
            "output": output, "stopped_by": "\nUser:", "model": "m", "decoding": {"temperature": 0.3},
            "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}}


def test_align_drops_leaking_targets_and_refusals_of_ordinary_requests_and_counts_them_by_origin():
    rows = [_row("q-1", THOUGHT + "Rainbows form when sunlight bends inside raindrops.", "self_instruct"),
            # A leak the earlier checks let through: the principle's name in parentheses, without its number.
            _row("q-2", THOUGHT + "Rainbows form when light bends in raindrops, as I know (informative).", "self_instruct"),
            _row("q-3", THOUGHT + "I'm sorry, but I can't help with writing a poem about cats.", "self_instruct"),
            _row("q-4", THOUGHT + "I'm sorry, but I can't help you get into someone else's account.", "red_team", "rt-06")]
    kept, rejected, counts, _ = align.collect(rows, assistant="Sage", principles=ACTIVE, exemplars=EXEMPLARS,
                                              principles_version=VERSION, filters=FILTERS)
    assert {r["reason"] for r in rejected} == {"leaks_prompt", "over_refusal"}
    assert counts["removed.leaks_prompt"] == 1 and counts["removed.over_refusal"] == 1
    assert [(r["source"], r["refusal"]) for r in kept] == [("self_instruct", False), ("red_team", True)]
    figures = align.origin_figures(kept + rejected, kept)
    assert figures["mix"]["kept"] == {"self_instruct": 1, "red_team": 1, "red_team_share": 0.5}
    assert figures["refusal_share"]["answered"]["self_instruct"] == {"n": 3, "refusals": 1, "share": 0.3333}
    assert figures["refusal_share"]["kept"]["red_team_by_type"] == {"rt-06": {"n": 1, "refusals": 1, "share": 1.0}}
    off = FILTERS | {"leaks_prompt": False, "over_refusal": False}
    assert align.collect(rows, assistant="Sage", principles=ACTIVE, exemplars=EXEMPLARS, principles_version=VERSION,
                         filters=off)[2]["kept"] == 4


def test_verbose_drops_the_instruction_repeated_and_refusals_of_ordinary_requests():
    instruction = verbose.instruction_text(PARAMS["verbose"]["instruction"], "Sage")
    long = "Rainbows are arcs of colour that form when sunlight meets raindrops; " * 3
    rows = [{"key": f"a-{i}", "meta": {"aligned_id": f"a-{i:016x}", "query": "Why rainbows?", "source": s, "type_id": t,
                                       "template_hash": "1" * 16},
             "output": text, "stopped_by": "\nUser:", "model": "m", "decoding": {}, "engine": {}}
            for i, (text, s, t) in enumerate([
                (long, "self_instruct", None),
                (long + " " + instruction, "self_instruct", None),
                ("I'm sorry, but I cannot explain rainbows. " + long, "self_instruct", None),
                ("I'm sorry, but I cannot help you hurt anyone. " + long, "red_team", "rt-06")])]
    kept, rejected, counts = verbose.collect(rows, assistant="Sage", min_words=20, filters=PARAMS["verbose"]["filters"],
                                             principle_names=NAMES, instruction=instruction)
    assert [r["reason"] for r in rejected] == ["leaks_prompt", "over_refusal"]
    assert [r["source"] for r in kept] == ["self_instruct", "red_team"] and kept[1]["refusal"]


def test_fidelity_agreement_compares_decisions_where_the_teacher_decided():
    teacher_rows = [_row("xstest/1", THOUGHT + "I'm sorry, but I can't help with that.", None),
                    _row("xstest/2", THOUGHT + "You can stop a process with the kill command.", None),
                    _row("heldout/q-1", THOUGHT + "Rain forms when water vapour condenses.", "self_instruct"),
                    _row("heldout/q-2", " The user asks", "red_team", finished=False)]  # no answer: no decision
    teacher = fidelity.teacher_decisions(teacher_rows, assistant="Sage", principles=ACTIVE, exemplars=EXEMPLARS)
    assert [t["refusal"] for t in teacher.values()] == [True, False, False, None]
    assert [t["finished"] for t in teacher.values()] == [True, True, True, False]
    sets = {k: k.split("/")[0] for k in teacher}
    student = fidelity.decisions([{"key": "xstest/1", "output": " I cannot do that."},
                                  {"key": "xstest/2", "output": " I'm sorry, I can't."},
                                  {"key": "heldout/q-1", "output": " Water vapour cools."},
                                  {"key": "heldout/q-2", "output": " No."}])
    got = fidelity.agreement(teacher, student, sets)
    assert (got["n"], got["agreement"]) == (3, 0.6667)
    assert (got["xstest"]["agreement"], got["heldout"]["n"], got["heldout"]["agreement"]) == (0.5, 1, 1.0)
    assert got["agreement_lo"] < got["agreement"] < got["agreement_hi"]
