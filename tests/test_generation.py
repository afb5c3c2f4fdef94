import pytest

from selfalign.core.files import InputError, read_jsonl
from selfalign.engine.journal import Journal, run_shard, shard_slice
from selfalign.engine.models import load_model
from selfalign.engine.transformers_backend import TransformersBackend, generate_batch, sampling_candidates
from selfalign.engine.types import Decoding, Engine, Item

DEC = Decoding(temperature=0.9, top_p=0.95, max_new_tokens=6)
ENGINE = Engine(batch_size=3, dtype="float32", prefix_cache=True)
ITEMS = [Item(key=f"k{i}", prompt=f"List {i}: apples, pears and", meta={"i": i}) for i in range(7)]


class Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def loaded(tiny_materialized):
    model, tok, _ = load_model(tiny_materialized)
    return model, tok


def _backend(loaded, engine):
    return TransformersBackend(*loaded, engine)


def _run(tmp_path, name, model_dir, loaded, **kw):
    return run_shard(ITEMS, model_dir=model_dir, decoding=DEC, seed=3, engine=ENGINE, out_path=tmp_path / f"{name}.jsonl",
                     journal_dir=tmp_path / f"journal-{name}", backend=_backend(loaded, ENGINE), **kw)


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.3, 50, 0.9), (0.8, 50, 0.95), (1.0, 0, 0.5), (0.7, 5, 1.0),
                                                     (2.0, 300, 0.99)])
def test_sampling_draws_from_the_distribution_of_transformers_warpers(temperature, top_k, top_p):
    import torch
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

    g = torch.Generator().manual_seed(top_k)
    scores = torch.randn(4, 1000, generator=g) * 3
    scores[:, :20] = float("-inf")  # suppressed tokens
    if top_k:  # ties at the k-th (top-p's cut inside a tie is arbitrary, in transformers too)
        ranked = scores[1].argsort(descending=True)
        scores[1, ranked[top_k - 3 : top_k + 5]] = float(scores[1, ranked[top_k - 3]])
    warpers = [TemperatureLogitsWarper(temperature)] + ([TopKLogitsWarper(top_k)] if top_k else []) + [TopPLogitsWarper(top_p)]
    expected = torch.softmax(LogitsProcessorList(warpers)(None, scores.clone()), dim=-1)
    probs, index = sampling_candidates(scores, Decoding(temperature, top_p, 8, top_k))
    got = torch.zeros_like(scores).scatter_(-1, index, probs)
    assert torch.allclose(got, expected, atol=1e-6)
    assert (got > 0).sum() < scores.shape[0] * scores.shape[1]  # something was cut


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


def test_a_resumed_shard_builds_its_prefix_cache_as_an_uninterrupted_one(tmp_path, tiny_materialized, loaded,
                                                                         monkeypatch):
    """A prefix extended batch by batch rounds differently from one computed at once (in bf16 a resumed
    shard sampled other tokens): the resumed shard replays the prefixes of the batches its journal holds."""
    from selfalign.engine.prefix_cache import PrefixCache

    calls = []
    states = PrefixCache.states
    monkeypatch.setattr(PrefixCache, "states", lambda self, ids: calls.append(tuple(ids)) or states(self, ids))
    items = [Item(key=f"k{i}", prompt=f"Write a list of fruit, then a list of {w}: 1.", meta={}) for i, w in
             enumerate(["trees", "birds", "rivers", "tools", "songs", "games", "stones"])]

    def run(name, **kw):
        return run_shard(items, model_dir=tiny_materialized, decoding=DEC, seed=3, engine=ENGINE,
                         out_path=tmp_path / f"{name}.jsonl", journal_dir=tmp_path / f"journal-{name}",
                         backend=_backend(loaded, ENGINE), **kw)

    full = run("full")
    uninterrupted = list(calls)

    def stop_after_first(b):
        if b == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        run("cut", on_batch=stop_after_first)
    calls.clear()  # only the resumed run's calls count
    assert run("cut") == full
    assert len(uninterrupted) == 3 and calls == uninterrupted


def test_journal_of_other_settings_is_not_reused(tmp_path, tiny_materialized, loaded):
    _run(tmp_path, "x", tiny_materialized, loaded)
    redone = []
    run_shard(ITEMS, model_dir=tiny_materialized, decoding=DEC, seed=4, engine=ENGINE, out_path=tmp_path / "y.jsonl",
              journal_dir=tmp_path / "journal-x", backend=_backend(loaded, ENGINE), on_batch=redone.append)
    assert redone == [0, 1, 2]


def test_journal_ignores_a_torn_last_line(tmp_path):
    j = Journal(tmp_path, "k")
    j.append(0, [{"text": "a"}])
    with open(j.path, "a") as f:
        f.write('{"batch": 1, "res')
    assert j.load() == {0: [{"text": "a"}]}


def test_journal_keeps_every_batch_after_two_kills_in_a_row(tmp_path):
    j = Journal(tmp_path, "k")
    j.append(0, [{"text": "a"}])
    for torn_batch, next_batches in ((1, (1, 2)), (3, (3,))):
        with open(j.path, "a") as f:  # a kill in the middle of writing the next line
            f.write(f'{{"batch": {torn_batch}, "res')
        assert set(j.load()) == set(range(torn_batch))
        for b in next_batches:  # the resumed run finishes the batch the kill cut and goes on
            j.append(b, [{"text": str(b)}])
    assert j.load() == {b: [{"text": t}] for b, t in enumerate("a123")}


@pytest.mark.parametrize("torn", ['{"batch": 1, "res', '{"batch": 1, "results": [{"text": "' + "x" * 200_000])
def test_append_drops_only_the_torn_tail(tmp_path, torn):
    # A tail longer than one backward read (64 KiB), and a file that is all torn tail.
    for head in ([0], []):
        j = Journal(tmp_path / str(len(head)), "k")
        j.path.parent.mkdir()
        for b in head:
            j.append(b, [{"text": "a"}])
        with open(j.path, "a") as f:
            f.write(torn)
        j.append(1, [{"text": "b"}])
        assert j.load() == {b: [{"text": t}] for b, t in zip([*head, 1], "ab" if head else "b")}
        assert j.path.read_bytes().count(b"\n") == len(head) + 1


def test_stop_strings_cut_output(tmp_path, tiny_materialized, loaded):
    rows = run_shard(ITEMS[:2], model_dir=tiny_materialized, decoding=Decoding(0.0, 1.0, 12), seed=1, engine=ENGINE,
                     out_path=tmp_path / "s.jsonl", journal_dir=tmp_path / "j", backend=_backend(loaded, ENGINE))
    first = rows[0]["output"]
    assert first, "greedy decoding of 12 tokens should give some text"
    stop = first.strip()[:2]
    cut = run_shard(ITEMS[:2], model_dir=tiny_materialized, decoding=Decoding(0.0, 1.0, 12), seed=1, engine=ENGINE,
                    out_path=tmp_path / "s2.jsonl", journal_dir=tmp_path / "j2", backend=_backend(loaded, ENGINE), stop=[stop])
    assert stop not in cut[0]["output"] and cut[0]["finished"]


# A prefix longer than the tiny Gemma's sliding window (8 tokens), then suffixes of different lengths, so
# that a batch is padded and its rows' windows reach back into the shared prefix.
SHARED = "The part every prompt shares: a few rules, a worked example, then a question. "
PROMPTS = [SHARED + q for q in ("Why?", "What is the tallest mountain on Earth, and how tall is it?", "Hi",
                                "Tell me about the weather in a city far away from here today.")]


@pytest.mark.parametrize("model_fixture", ["tiny_materialized", "tiny_gemma_materialized"])
def test_prefix_cache_gives_the_outputs_of_the_no_cache_path(model_fixture, request, tmp_path):
    model_dir = request.getfixturevalue(model_fixture)
    model, tok, _ = load_model(model_dir)
    items = [Item(key=f"p{i}", prompt=p) for i, p in enumerate(PROMPTS * 2)]
    greedy = Decoding(0.0, 1.0, 16)
    runs = {}
    for cached in (False, True):
        engine = Engine(batch_size=4, dtype="float32", prefix_cache=cached)
        runs[cached] = run_shard(items, model_dir=model_dir, decoding=greedy, seed=1, engine=engine,
                                 out_path=tmp_path / f"{cached}.jsonl", journal_dir=tmp_path / f"j{cached}",
                                 backend=_backend((model, tok), engine), stop=["\n\n"])
    plain, cached = ([(r["output"], r["new_tokens"], r["stopped_by"]) for r in runs[c]] for c in (False, True))
    assert plain == cached
    assert len({o for o, _, _ in plain}) > 1  # real, varied outputs, not a constant
    # One prompt at a time (no padding at all) gives the same again.
    alone = [generate_batch(model, tok, [p], greedy, seed=1, stop=["\n\n"])[0].text for p in PROMPTS]
    assert alone == [o for o, _, _ in plain[:4]]


def test_prefix_cache_reuses_and_extends_the_shared_states(tiny_gemma_materialized):
    import torch

    from selfalign.engine.prefix_cache import PrefixCache

    model, tok, _ = load_model(tiny_gemma_materialized)
    a, b = (tok(p)["input_ids"] for p in PROMPTS[:2])
    shared = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    cache = PrefixCache(model)
    cache.states(a)
    assert cache.computed_tokens == len(a)
    got = cache.states(b)  # only what b adds after the shared head is computed
    assert cache.computed_tokens == len(a) + len(b) - shared
    fresh = PrefixCache(model).states(b)
    for (k1, v1), (k2, v2) in zip(got, fresh):
        assert k1.shape == k2.shape and torch.allclose(k1, k2, atol=1e-5) and torch.allclose(v1, v2, atol=1e-5)
    head = cache.states(b[:shared])  # a shorter prefix is a slice, computed for free
    assert cache.computed_tokens == len(a) + len(b) - shared and head[0][0].shape[-2] == shared
