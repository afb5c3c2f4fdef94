import json

import pytest

from selfalign.generation import Decoding, Item, Journal, run_shard, shard_slice
from selfalign.io import InputError, read_jsonl
from selfalign.models import load

DEC = Decoding(temperature=0.9, top_p=0.95, max_new_tokens=6)
ITEMS = [Item(key=f"k{i}", prompt=f"List {i}: apples, pears and", meta={"i": i}) for i in range(7)]


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def loaded(tiny_materialized):
    model, tok, _ = load(tiny_materialized)
    return model, tok


def _run(tmp_path, name, model_dir, loaded, **kw):
    return run_shard(ITEMS, model_dir=model_dir, decoding=DEC, seed=3, batch_size=3, out_path=tmp_path / f"{name}.jsonl",
                     journal_dir=tmp_path / f"journal-{name}", model_and_tokenizer=loaded, **kw)


def test_shard_slices_cover_items_once():
    parts = [shard_slice(ITEMS, k, 3) for k in range(3)]
    assert [it for p in parts for it in p] == ITEMS
    with pytest.raises(InputError):
        shard_slice(ITEMS, 3, 3)


def test_generation_is_seeded_and_rows_keep_order(tmp_path, tiny_materialized, loaded):
    a = _run(tmp_path, "a", tiny_materialized, loaded)
    b = _run(tmp_path, "b", tiny_materialized, loaded)
    assert [r["output"] for r in a] == [r["output"] for r in b]
    assert [r["key"] for r in a] == [it.key for it in ITEMS]
    assert all(0 < r["new_tokens"] <= DEC.max_new_tokens for r in a)
    assert read_jsonl(tmp_path / "a.jsonl") == a
    assert len({r["output"] for r in a}) > 1  # sampling, not a constant


def test_resume_after_interruption_redoes_only_missing_batches(tmp_path, tiny_materialized, loaded):
    full = _run(tmp_path, "full", tiny_materialized, loaded)

    def stop_after_first(b):
        if b == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(tmp_path, "cut", tiny_materialized, loaded, on_batch=stop_after_first)
    assert not (tmp_path / "cut.jsonl").exists()  # no half-written output
    # Simulate a kill in the middle of writing the next journal line.
    journal = next((tmp_path / "journal-cut").glob("*.jsonl"))
    with open(journal, "a") as f:
        f.write('{"batch": 1, "results": [{"te')
    redone = []
    resumed = _run(tmp_path, "cut", tiny_materialized, loaded, on_batch=redone.append)
    assert redone == [1, 2]
    assert resumed == full


def test_journal_of_other_settings_is_not_reused(tmp_path, tiny_materialized, loaded):
    _run(tmp_path, "x", tiny_materialized, loaded)
    redone = []
    run_shard(ITEMS, model_dir=tiny_materialized, decoding=DEC, seed=4, batch_size=3, out_path=tmp_path / "y.jsonl",
              journal_dir=tmp_path / "journal-x", model_and_tokenizer=loaded, on_batch=redone.append)
    assert redone == [0, 1, 2]


def test_journal_ignores_a_torn_last_line(tmp_path):
    j = Journal(tmp_path, "k")
    j.append(0, [{"text": "a"}])
    with open(j.path, "a") as f:
        f.write('{"batch": 1, "res')
    assert j.load() == {0: [{"text": "a"}]}


def test_stop_strings_cut_output(tmp_path, tiny_materialized, loaded):
    rows = run_shard(ITEMS[:2], model_dir=tiny_materialized, decoding=Decoding(0.0, 1.0, 12), seed=1, batch_size=2,
                     out_path=tmp_path / "s.jsonl", journal_dir=tmp_path / "j", model_and_tokenizer=loaded)
    first = rows[0]["output"]
    assert first, "greedy decoding of 12 tokens should give some text"
    stop = first.strip()[:2]
    cut = run_shard(ITEMS[:2], model_dir=tiny_materialized, decoding=Decoding(0.0, 1.0, 12), seed=1, batch_size=2,
                    out_path=tmp_path / "s2.jsonl", journal_dir=tmp_path / "j2", model_and_tokenizer=loaded, stop=[stop])
    assert stop not in cut[0]["output"] and cut[0]["finished"]
