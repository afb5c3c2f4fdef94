"""Both generation backends on the same items: the same text greedily, the same stops, seeded sampling,
lineage, suppressed tokens, and a killed shard resumed without losing finished batches."""
import json
import shutil

import pytest

from selfalign.core.files import read_jsonl
from selfalign.engine.backends import open_backend
from selfalign.engine.journal import journal_key, run_shard
from selfalign.engine.types import Decoding, Engine, Item, TextStop

pytest.importorskip("vllm")

PROMPTS = ["The part every prompt shares: rules, an example, then a question. Why?",
           "The part every prompt shares: rules, an example, then a question. What is the tallest mountain?",
           "Hi", "List three fruits: apples, pears and"]
ITEMS = [Item(key=f"k{i}", prompt=p, meta={"i": i}) for i, p in enumerate(PROMPTS * 2)]
GREEDY = Decoding(0.0, 1.0, 16)
SAMPLED = Decoding(0.9, 0.95, 12, top_k=20)


def engine(backend: str, **kw) -> Engine:
    return Engine(**{"batch_size": 4, "dtype": "float32", "prefix_cache": True, "backend": backend, "max_num_seqs": 4} | kw)


@pytest.fixture(scope="module")
def tiny_folder(tokenizer_dir, tmp_path_factory):
    """A tiny random Llama with 64-dim heads: vLLM's CPU attention has no kernel for the 16 of tests' usual one."""
    from conftest import build_tiny_model

    return build_tiny_model(tokenizer_dir, tmp_path_factory.mktemp("tiny-llama-64"), hidden=256)


@pytest.fixture(scope="module")
def tiny_materialized(tiny_folder, tmp_path_factory):
    from selfalign.engine.models import materialize

    out = tmp_path_factory.mktemp("tiny-64-base")
    materialize(str(tiny_folder), out)
    return out


@pytest.fixture(scope="module")
def backends(tiny_materialized):
    """One backend of each kind on the tiny model (a vLLM engine starts once per module)."""
    return {b: open_backend(tiny_materialized, engine(b)) for b in ("transformers", "vllm")}


def _run(backends, name, model_dir, tmp_path, decoding=GREEDY, stop=(), items=ITEMS, **kw):
    return run_shard(items, model_dir=model_dir, decoding=decoding, seed=5, engine=engine(name), stop=stop,
                     out_path=tmp_path / f"{name}.jsonl", journal_dir=tmp_path / f"j-{name}", backend=backends[name], **kw)


def _gens(rows):
    return [(r["output"], r["finished"], r["new_tokens"], r["stopped_by"]) for r in rows]


def test_greedy_gives_the_same_generations_on_both_backends(backends, tiny_materialized, tmp_path):
    runs = {b: _run(backends, b, tiny_materialized, tmp_path) for b in backends}
    assert _gens(runs["vllm"]) == _gens(runs["transformers"])
    assert len({r["output"] for r in runs["vllm"]}) > 1  # real, varied outputs
    assert all(r["new_tokens"] == 16 and not r["finished"] for r in runs["vllm"] if r["stopped_by"] is None)


def test_an_open_engine_answers_with_another_checkpoints_weights(backends, tiny_folder, tiny_materialized, tmp_path,
                                                                tokenizer_dir):
    """Backend.load (eval's one engine for its checkpoints): after it, an engine answers as a fresh one on the
    loaded checkpoint; loading the first back gives its answers again."""
    from conftest import build_tiny_model
    from selfalign.engine.backends import SharedEngine
    from selfalign.engine.models import materialize

    other = tmp_path / "other"
    materialize(str(build_tiny_model(tokenizer_dir, tmp_path / "other-folder", seed=1, hidden=256)), other)
    fresh = _run({"transformers": open_backend(other, engine("transformers"))}, "transformers", other, tmp_path / "fresh")
    first = _run(backends, "transformers", tiny_materialized, tmp_path / "first")
    assert _gens(fresh) != _gens(first)  # the two checkpoints answer differently
    for name, backend in backends.items():
        backend.load(other)
        assert _gens(_run(backends, name, other, tmp_path / f"{name}-other")) == _gens(fresh), name
        backend.load(tiny_materialized)
        assert _gens(_run(backends, name, tiny_materialized, tmp_path / f"{name}-back")) == _gens(first), name
    # A job's shared engine opens once, on the first checkpoint it is given, and loads each other one.
    shared = SharedEngine(engine("transformers"))
    rows = [run_shard(ITEMS, model_dir=m, decoding=GREEDY, seed=5, engine=engine("transformers"), out_path=None,
                      journal_dir=tmp_path / f"j-shared-{i}", shared=shared) for i, m in enumerate((tiny_materialized, other))]
    assert [_gens(r) for r in rows] == [_gens(first), _gens(fresh)]
    assert shared.model_dir == str(other)


def test_string_and_text_stops_cut_the_same_text_the_same_way(backends, tiny_materialized, tmp_path):
    plain = _run(backends, "transformers", tiny_materialized, tmp_path / "plain")
    text = next(r["output"] for r in plain if len(r["output"].split()) > 3)
    word = text.split()[1]  # a string stop the outputs reach
    # A rule no fixed string expresses: cut before the third space.
    third_space = TextStop("third_space", lambda t: (lambda i: i if i >= 0 else None)(
        t.find(" ", t.find(" ", t.find(" ") + 1) + 1) if t.count(" ") >= 3 else -1))
    stop = (word, third_space)
    runs = {b: _run(backends, b, tiny_materialized, tmp_path, stop=stop) for b in backends}
    assert _gens(runs["vllm"]) == _gens(runs["transformers"])
    reasons = {r["stopped_by"] for r in runs["vllm"]}
    assert {word, "third_space"} <= reasons
    for cut, full in zip(runs["vllm"], plain):
        assert full["output"].startswith(cut["output"]) and word not in cut["output"]
        assert cut["finished"] == (cut["stopped_by"] is not None)
        if cut["stopped_by"]:
            assert cut["new_tokens"] <= full["new_tokens"]


def test_sampling_is_seeded_per_batch(backends, tiny_materialized, tmp_path):
    one, two = (_run(backends, "vllm", tiny_materialized, tmp_path / d, decoding=SAMPLED) for d in ("a", "b"))
    assert _gens(one) == _gens(two)
    assert [r["seed"] for r in one] == [r["seed"] for r in two]
    greedy = _run(backends, "vllm", tiny_materialized, tmp_path / "g")
    assert _gens(one) != _gens(greedy)
    # Same prompt twice in one batch (k0 and k4 are in different batches; 8 items, batch 4): each request
    # draws from its own seed, so two requests of one prompt in a batch differ.
    twin = [Item(key=f"t{i}", prompt=PROMPTS[3]) for i in range(4)]
    rows = _run(backends, "vllm", tiny_materialized, tmp_path / "t", decoding=SAMPLED, items=twin)
    assert len({r["output"] for r in rows}) > 1


def test_a_sampled_request_draws_the_same_whatever_runs_beside_it(backends):
    """Each token is drawn from (request seed, position) alone: the same four prompts sampled alone and with four
    more beside them in one call give the same texts, and another seed gives other texts."""
    vllm = backends["vllm"]
    alone = [g.text for g in vllm.generate(PROMPTS, SAMPLED, seed=5)]
    beside = [g.text for g in vllm.generate(PROMPTS + PROMPTS[::-1], SAMPLED, seed=5)][:4]
    assert alone == beside
    assert [g.text for g in vllm.generate(PROMPTS, SAMPLED, seed=6)] != alone


CHUNKED = """
import json, sys, vllm
from selfalign.engine.types import Decoding, Engine
from selfalign.engine.vllm_backend import VllmBackend
llm = vllm.LLM
vllm.LLM = lambda **kw: llm(**kw, max_num_batched_tokens=16, enable_chunked_prefill=True)
engine = Engine(batch_size=4, dtype="float32", prefix_cache=True, backend="vllm", max_num_seqs=4)
gens = VllmBackend(sys.argv[1], engine).generate(sys.argv[2:], Decoding(0.9, 0.95, 12, top_k=20), seed=5)  # SAMPLED
print("TEXTS " + json.dumps([g.text for g in gens]))
"""


def test_sampling_survives_a_prefill_cut_in_chunks(backends, tiny_materialized):
    """A step that prefills part of a prompt discards the token it sampled and redraws it in a later step; a
    seeded CPU generator cannot be rewound for that ("CPU Generator does not use offset"), draws per position
    need no rewind and draw what whole-prompt steps draw. A 16-token step budget cuts every prompt here. In a
    process of its own: a second engine in this one would tear down the distributed state the module's engine
    runs on when it is closed."""
    import subprocess
    import sys

    prompts = [p + " Say more." * 6 for p in PROMPTS]
    out = subprocess.run([sys.executable, "-c", CHUNKED, str(tiny_materialized), *prompts], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    texts = [json.loads(line[6:]) for line in out.stdout.splitlines() if line.startswith("TEXTS ")]
    backends["vllm"].reset()
    assert texts == [[g.text for g in backends["vllm"].generate(prompts, SAMPLED, seed=5)]], out.stdout[-2000:]


def test_sampling_draws_only_from_the_top_k_nucleus(backends, tiny_materialized, tmp_path):
    """top-k and top-p are applied as on transformers (the nucleus among the top-k): with one candidate left,
    by top_k=1 or by a tiny top_p, sampling at temperature 1 gives the greedy text on both backends."""
    greedy = _gens(_run(backends, "transformers", tiny_materialized, tmp_path / "g"))
    for one in (Decoding(1.0, 1.0, 16, top_k=1), Decoding(1.0, 1e-6, 16, top_k=50)):
        for b in backends:
            assert _gens(_run(backends, b, tiny_materialized, tmp_path / f"{b}{one.top_k}", decoding=one)) == greedy, (b, one)


def test_records_and_journal_name_the_backend(backends, tiny_materialized, tmp_path):
    rows = _run(backends, "vllm", tiny_materialized, tmp_path)
    assert {r["engine"]["backend"] for r in rows} == {"vllm"}
    assert rows[0]["engine"]["max_num_seqs"] == 4
    keys = {b: journal_key(ITEMS, model_id="m", decoding=GREEDY, seed=5, engine=engine(b), stop=()) for b in backends}
    assert keys["vllm"] != keys["transformers"]


def test_suppressed_tokens_are_never_generated(backends, tiny_materialized, tiny_folder, tmp_path):
    """generation_config.suppress_tokens holds on both backends: suppress the token greedy decoding picks first."""
    from transformers import GenerationConfig

    from selfalign.engine.vllm_backend import SUPPRESS_BIAS, stop_and_suppress

    tok = backends["transformers"].tokenizer
    first = tok(_run(backends, "transformers", tiny_materialized, tmp_path / "x")[0]["output"],
                add_special_tokens=False)["input_ids"][0]
    folder = tmp_path / "model"
    shutil.copytree(tiny_folder, folder)
    gen = GenerationConfig.from_pretrained(folder)
    gen.suppress_tokens = [first]
    gen.save_pretrained(folder)
    eos, suppress = stop_and_suppress(folder, tok)
    assert suppress == {first: SUPPRESS_BIAS} and tok.eos_token_id in eos
    # The open backends with that setting (an engine per model folder would cost a vLLM start each).
    model_gen, vllm = backends["transformers"].model.generation_config, backends["vllm"]
    model_gen.suppress_tokens, vllm.suppress = [first], suppress
    try:
        for b in backends:
            rows = _run(backends, b, tiny_materialized, tmp_path / "s", items=ITEMS[:1])
            assert first not in tok(rows[0]["output"], add_special_tokens=False)["input_ids"], b
    finally:
        model_gen.suppress_tokens, vllm.suppress = None, {}


class Interrupt(Exception):
    pass


def test_a_killed_vllm_shard_keeps_its_finished_batches(backends, tiny_materialized, tmp_path):
    def kill_after_first(b):
        if b == 0:
            raise Interrupt

    with pytest.raises(Interrupt):
        _run(backends, "vllm", tiny_materialized, tmp_path, decoding=SAMPLED, on_batch=kill_after_first)
    journal = next((tmp_path / "j-vllm").glob("*.jsonl"))
    kept = json.loads(journal.read_text().splitlines()[0])
    redone = []
    rows = _run(backends, "vllm", tiny_materialized, tmp_path, decoding=SAMPLED, on_batch=redone.append)
    assert redone == [1]  # only the unfinished batch is generated again
    assert [r["output"] for r in rows[:4]] == [g["text"] for g in kept["results"]]
    assert read_jsonl(tmp_path / "vllm.jsonl") == rows and len(rows) == len(ITEMS)
    # The uninterrupted run gives the same records (here; see README "Resume" for when vLLM's may not).
    whole = _run(backends, "vllm", tiny_materialized, tmp_path / "whole", decoding=SAMPLED)
    assert _gens(whole) == _gens(rows)


ANNOTATED = """
import gc, json, sys, vllm
from selfalign.engine.journal import run_shard
from selfalign.engine.types import Decoding, Engine, Item
engine = Engine(batch_size=4, dtype="float32", prefix_cache=True, backend="vllm", max_num_seqs=4, max_model_len=256)
seen = {}
def annotate(model, tok, rows):
    seen["engines"] = sum(isinstance(o, vllm.LLM) for o in gc.get_objects())
    seen["model"] = type(model).__name__
    for r in rows:
        r["scored"] = True
rows = run_shard([Item(key=f"k{i}", prompt=p) for i, p in enumerate(sys.argv[3:])], model_dir=sys.argv[1],
                 decoding=Decoding(0.0, 1.0, 8), seed=1, engine=engine, out_path=None, journal_dir=sys.argv[2],
                 annotate=annotate)
print("SEEN " + json.dumps(seen | {"rows": len(rows), "scored": all(r["scored"] for r in rows)}))
"""


def test_a_shard_scored_after_vllm_generation_never_holds_two_copies_of_the_model(tiny_materialized, tmp_path):
    """align's relevance score (the off_topic filter) needs the model in transformers: the shard's vLLM engine is
    closed first, so a GPU never holds the engine's share beside a second copy. The engine is sized to the job
    (max_model_len). In a process of its own, as the closed engine tears down vLLM's distributed state."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", ANNOTATED, str(tiny_materialized), str(tmp_path / "j"), *PROMPTS],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = [json.loads(line[5:]) for line in out.stdout.splitlines() if line.startswith("SEEN ")]
    assert seen == [{"engines": 0, "model": "LlamaForCausalLM", "rows": len(PROMPTS), "scored": True}]


def test_an_engine_is_sized_for_its_longest_prompt_and_answer(tiny_materialized):
    from selfalign.engine import limits

    context = limits.context_length(tiny_materialized)[0]
    assert limits.model_len(tiny_materialized, 100, 28) == min(256, context)
    assert limits.model_len(tiny_materialized, 10 ** 6, 1) == context
    assert limits.model_len(tiny_materialized, None, 28) is None


@pytest.mark.parametrize("temperature,top_k,top_p", [(0.3, 50, 0.9), (0.8, 5, 0.95), (1.0, 0, 0.5), (2.0, 300, 0.99)])
def test_the_batch_draw_samples_the_distribution_of_transformers_warpers(temperature, top_k, top_p):
    """Inverse-CDF draws at evenly spaced points give each token its probability under `sampling_candidates`
    (transformers' warpers), to within one point, rows of other settings beside it and ties included."""
    import torch

    from selfalign.engine.transformers_backend import sampling_candidates
    from selfalign.engine.vllm_sampling import draw

    torch.manual_seed(0)
    logits = torch.randn(2, 1000) * 3
    logits[0, :8] = logits[0].max() + 0.5  # eight tokens tied at the top: top_k=5 keeps all eight
    points = 4000
    u = (torch.arange(points, dtype=torch.float32) + 0.5) / points
    rows = logits.repeat_interleave(points, dim=0)
    other = torch.tensor([[1.0, 0.7, 7]]).repeat(points, 1)  # row 1 under other settings: it must not matter
    mine = torch.tensor([[temperature, top_p, top_k]]).repeat(points, 1)
    params = torch.cat([mine, other])
    tokens = draw(rows, params[:, 0], params[:, 1], params[:, 2].long(), torch.cat([u, u]))
    probs, index = sampling_candidates(logits[:1], Decoding(temperature, top_p, 1, top_k=top_k))
    expected = torch.zeros(1000).index_add_(0, index[0], probs[0])
    counts = torch.bincount(tokens[:points], minlength=1000).float() / points
    # Which of equally likely tokens a nucleus cut keeps is the order of ties: here by token id, in
    # transformers' top-k as it happens. The tied tokens' mass is what must agree; every other token's own.
    assert torch.allclose(counts[:8].sum(), expected[:8].sum(), atol=1.5 / points)
    assert torch.allclose(counts[8:], expected[8:], atol=1.5 / points)
    alone = draw(logits[:1].repeat(points, 1), mine[:, 0], mine[:, 1], mine[:, 2].long(), u)
    assert torch.equal(alone, tokens[:points])  # the same tokens with no other rows beside them


def test_the_batch_draw_keeps_every_token_tied_with_the_kth_however_many():
    # 100 tokens tied at the top and top_k=5: more ties than the draw's first top-k holds, so it takes them all.
    import torch

    from selfalign.engine.vllm_sampling import TIE_MARGIN, draw

    logits = torch.zeros(1, 5000)
    logits[0, 1000:1000 + 5 + TIE_MARGIN + 31] = 4.0
    points = 10_000
    u = (torch.arange(points, dtype=torch.float32) + 0.5) / points
    ones = torch.ones(points)
    tokens = draw(logits.repeat(points, 1), ones, ones, torch.full((points,), 5), u)
    assert set(tokens.tolist()) == set(range(1000, 1000 + 5 + TIE_MARGIN + 31))
