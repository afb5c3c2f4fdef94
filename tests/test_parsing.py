from collections import Counter

from selfalign.data.seeds import load_question_types, load_self_instruct
from selfalign.data.templates import Template
from selfalign.stages import queries, topics
from selfalign.text.parsing import parse_numbered

from conftest import ROOT


def test_numbered_list_continuation():
    items = parse_numbered(" Volcanoes\n2. Ocean tides\n3) Desert plants\n5. skipped numbering", first=1, finished=True)
    assert [(i.number, i.text) for i in items] == [(1, "Volcanoes"), (2, "Ocean tides"), (3, "Desert plants")]
    assert all(i.complete for i in items)


def test_last_item_of_cut_generation_is_incomplete():
    items = parse_numbered(" Write a haiku about rain.\n5. Explain how a", first=4, finished=False)
    assert [i.complete for i in items] == [True, False]


def test_a_line_that_breaks_the_numbering_ends_the_list():
    items = parse_numbered(" Who painted it?\nNew questions about Artists:\n1. What", first=1, finished=False)
    assert [(i.text, i.complete) for i in items] == [("Who painted it?", True)]


def words(n: int) -> str:
    """n distinct letter-only words: "wa wb ... wbj"."""
    return " ".join("w" + "".join(chr(97 + int(d)) for d in str(i)) for i in range(n))


def test_query_filters():
    f = lambda t: queries.filter_reason(t, min_words=3, max_words=150)
    assert f("Explain why the sky looks blue at noon.") is None
    assert f("Hi there") == "too_short"
    assert f(words(151)) == "too_long"
    assert f(" ".join(["word"] * 151)) == "garbage"  # one word repeated: degenerate sampling
    assert f("Describe the image below in detail.") == "blocklist"
    assert f("Draw a map of your town.") == "blocklist"
    assert f("- What is the capital of Peru?") == "leading_punctuation"
    assert f("Éxplique la photosynthèse en détail svp.") == "non_ascii_start"
    assert f("   ") == "empty"
    # Whole words only: "profile" contains "file" but asks nothing a text model cannot do.
    assert f("Write a short profile of a famous chemist.") is None


def test_topic_cleaning():
    assert topics.clean_topic(' "Renewable energy".', 12) == ("Renewable energy", None)
    assert topics.clean_topic("What is the tallest mountain?", 12)[1] == "question_not_topic"
    assert topics.clean_topic(words(20), 12)[1] == "too_long"
    assert topics.clean_topic("\x00\x01 energy", 12)[1] == "garbage"
    assert topics.clean_topic("  ", 12)[1] == "empty"
    assert topics.clean_topic("Calendar calendar", 12)[1] == "repeated_word"
    assert topics.clean_topic("Trains versus trains on tracks", 12) == ("Trains versus trains on tracks", None)


def test_types_short_of_topics_get_more_rounds_until_covered():
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")[:3]
    tmpl = Template(ROOT / "templates/topics.j2")
    # Canned continuations: the first type writes topics at once, the second only in its second round,
    # the third never (it writes questions).
    answers = {(types[0]["id"], 0): " Solar power\n5. Wind farms\n\n", (types[1]["id"], 1): " Ancient Rome\n5. Ancient Egypt\n\n"}
    asked = []

    def run(items):
        asked.append(sorted({it.meta["type_id"] for it in items}))
        return [_row(answers.get((it.meta["type_id"], it.meta["round"]), " Why is it so?\n"), True, it.meta) for it in items]

    rows = topics.generate(types, tmpl, samples_per_type=1, min_per_type=2, max_rounds=3, max_words=12, threshold=0.7, run=run)
    ids = [t["id"] for t in types]
    assert asked == [ids, ids[1:], ids[2:]]  # a covered type gets no more samples
    _, _, per_type = topics.collect(rows, types, tmpl, max_per_type=3, max_words=12, threshold=0.7)
    assert per_type == {ids[0]: 2, ids[1]: 2, ids[2]: 0}
    # Each sample continues the list after the type's seed topics.
    assert all(it_first == len(types[0]["topics"]) + 1 for it_first in {r["meta"]["first"] for r in rows})


def test_a_later_round_continues_the_list_from_the_topics_kept_so_far():
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")[:1]
    tmpl = Template(ROOT / "templates/topics.j2")
    seeds = types[0]["topics"]
    asked = []

    def run(items):  # round 0 keeps one topic (one short of min_per_type); round 1 goes on from it
        asked.extend(items)
        return [_row(" Solar power\n\n" if it.meta["round"] == 0 else " Wind farms\n\n", True, it.meta) for it in items]

    rows = topics.generate(types, tmpl, samples_per_type=1, min_per_type=2, max_rounds=3, max_words=12, threshold=0.7, run=run)
    first, second = asked
    n = len(seeds)
    assert (first.meta["first"], second.meta["first"]) == (n + 1, n + 2)
    assert first.prompt.endswith(f"{n}. {seeds[-1]}\n{n + 1}.")
    # The seed topics, then the kept one, and the model continues the numbered list after it.
    assert second.prompt.endswith(f"{n}. {seeds[-1]}\n{n + 1}. Solar power\n{n + 2}.")
    assert second.prompt.removesuffix(f"Solar power\n{n + 2}.") == first.prompt.removesuffix(f"{n + 1}.") + f"{n + 1}. "
    recs, _, _ = topics.collect(rows, types, tmpl, max_per_type=3, max_words=12, threshold=0.7)
    assert [r["topic"] for r in recs] == ["Solar power", "Wind farms"]


def _row(output, finished, meta, model="m@1"):
    return {"key": "k", "meta": meta, "output": output, "finished": finished, "model": model,
            "decoding": {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 48}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}}


def test_collect_topics_parses_dedups_and_caps():
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")[:2]
    tmpl = Template(ROOT / "templates/topics.j2")
    rows = [
        _row(" Solar power\n2. solar power\n3. Wind farms\n4. Tidal energy\n5. Geothermal heat\n6. Nucl", False,
             {"type_id": types[0]["id"], "first": 1, "round": 0}),
        _row(" Ancient Rome", True, {"type_id": types[1]["id"], "first": 1, "round": 0}),
    ]
    recs, counts, per_type = topics.collect(rows, types, tmpl, max_per_type=3, max_words=12, threshold=0.7)
    assert per_type == {types[0]["id"]: 3, types[1]["id"]: 1}
    assert [r["topic"] for r in recs] == ["Solar power", "Wind farms", "Tidal energy", "Ancient Rome"]
    assert counts["removed.truncated"] == 1 and counts["removed.near_duplicate"] == 1
    assert counts["removed.over_max_per_type"] == 1
    assert all(r["parent_ids"] == [r["type_id"]] and r["template_hash"] == tmpl.hash for r in recs)
    # Ids are content hashes: the same output gives the same ids on a rerun.
    assert [r["id"] for r in topics.collect(rows, types, tmpl, max_per_type=3, max_words=12, threshold=0.7)[0]] == [r["id"] for r in recs]


def test_collect_queries_counts_every_removal():
    seeds = load_self_instruct(ROOT / "data/seeds/self_instruct.jsonl")
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")
    si_meta = {"source": "self_instruct", "parent_ids": ["si-001", "si-002"], "first": 3, "template_hash": "0" * 16}
    rt_meta = {"source": "red_team", "parent_ids": ["tp-0000000000000000"], "type_id": "rt-01",
               "topic_id": "tp-0000000000000000", "first": 1, "template_hash": "1" * 16}
    rows = [
        _row(" Write a limerick about a forgetful robot.\n4. Hi\n5. Plot the data as a chart please.\n"
             f"6. {seeds[5]['instruction']}\n7. Explain how vaccines train the", False, si_meta),
        _row(" How did Isaac Newton spend his years at Cambridge?\n2. How did Isaac Newton spend his years at Cambridge?",
             True, rt_meta),
    ]
    kept, rejected, counts = queries.collect(rows, seeds, types, min_words=3, max_words=150, threshold=0.7)
    assert [k["query"] for k in kept] == ["Write a limerick about a forgetful robot.",
                                          "How did Isaac Newton spend his years at Cambridge?"]
    assert counts == Counter({"parsed": 7, "removed.too_short": 1, "removed.blocklist": 1, "removed.truncated": 1,
                              "removed.near_duplicate": 2, "kept": 2, "kept.self_instruct": 1, "kept.red_team": 1})
    assert {r["reason"].split("(")[0] for r in rejected} == {"too_short", "blocklist", "truncated", "near_duplicate"}
    assert any("reference:5" in r["reason"] for r in rejected)  # the copied seed demonstration
    assert len({r["id"] for r in kept + rejected}) == len(kept) + len(rejected)
    assert kept[1]["type_id"] == "rt-01" and kept[0]["type_id"] is None


def test_build_items_is_deterministic():
    seeds = load_self_instruct(ROOT / "data/seeds/self_instruct.jsonl")
    types = load_question_types(ROOT / "data/seeds/red_team_types.jsonl")
    topics_ = [{"id": "tp-0000000000000001", "type_id": "rt-02", "topic": "The moon landing"}]
    args = dict(self_instruct_prompts=4, demos_per_prompt=3, questions_per_topic_prompt=2, seed=7)
    si, rt = Template(ROOT / "templates/self_instruct.j2"), Template(ROOT / "templates/red_team_questions.j2")
    a = queries.build_items(seeds, types, topics_, si, rt, **args)
    b = queries.build_items(seeds, types, topics_, si, rt, **args)
    assert a == b and len(a) == 6
    assert a[0].prompt.endswith("\n4.") and "The moon landing" in a[-1].prompt
