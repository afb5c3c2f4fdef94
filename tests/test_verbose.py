"""The verbose stage's prompt and filters."""
import pytest

from selfalign.data.templates import Template
from selfalign.stages import verbose
from selfalign.validation.write import validate_records

from conftest import ROOT


def test_prompt_puts_the_instruction_before_the_plain_dialogue():
    items = verbose.build_items([{"id": "a-0000000000000001", "query": "Why is the sea salty?"}],
                                Template(ROOT / "templates/verbose.j2"), assistant="Sage",
                                instruction="{assistant} answers   in detail.")
    assert items[0].prompt == "Sage answers in detail.\n\nUser: Why is the sea salty?\n\nSage:"
    assert items[0].meta["aligned_id"] == "a-0000000000000001"


LONG = " ".join(["Salt comes from rocks worn down by rain, carried by rivers to the sea."] * 3)


@pytest.mark.parametrize("text,stopped_by,reason", [
    ("", "eos", "empty"),
    (LONG, None, "truncated"),
    (LONG + "\nHuman: thanks", "eos", "restarts_dialogue"),
    ("Because of salt.", "eos", "too_short"),
    (LONG + "\nThe sea is salty.\nThe sea is salty.\nThe sea is salty.", "eos", "repetition"),
    (LONG, "\nUser:", None),
])
def test_filters(text, stopped_by, reason):
    assert verbose.filter_reason(text, stopped_by=stopped_by, assistant="Sage", min_words=20) == reason


def test_collect_links_each_answer_to_its_aligned_parent():
    rows = [{"meta": {"aligned_id": f"a-{i:016x}", "query": "Why is the sea salty?", "source": "self_instruct", "template_hash": "1" * 16},
             "output": out, "stopped_by": "eos", "model": "engraved@x", "decoding": {"temperature": 0.7}, "engine": {"dtype": "float32", "prefix_cache": True, "batch_size": 8, "backend": "transformers"}}
            for i, out in enumerate([" " + LONG, "Short."])]
    kept, rejected, counts = verbose.collect(rows, assistant="Sage", min_words=20)
    assert [k["parent_ids"] for k in kept] == [["a-0000000000000000"]] and kept[0]["answer"] == LONG
    assert counts["kept"] == 1 and counts["removed.too_short"] == 1 and rejected[0]["reason"] == "too_short"
    validate_records(kept, dataset="verbose", path="data/verbose/verbose.jsonl", rule="collect_verbose")
    validate_records(rejected, dataset="verbose_rejected", path="data/verbose/rejected.jsonl", rule="collect_verbose")
