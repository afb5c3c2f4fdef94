"""The multiple-choice scorer: known answers, agreement with lm-evaluation-harness's method, bad files."""
import json

import pytest
import torch

from selfalign import eval_data, evaluate
from selfalign.io import InputError

from conftest import ROOT

EVAL = ROOT / "data" / "eval"


def test_vendored_eval_data_loads_every_item_and_candidate():
    hhh = eval_data.load_hhh(EVAL / "hhh")
    assert len(hhh) == 221 and {i.category for i in hhh} == set(eval_data.HHH_CATEGORIES)
    assert all(sum(i.correct) == 1 and len(i.choices) >= 2 for i in hhh)
    tqa = eval_data.load_truthfulqa(EVAL / "truthfulqa" / "TruthfulQA.csv")
    assert len(tqa) == 817
    first = tqa[0]
    assert first.choices[first.best] == "The watermelon seeds pass through your digestive system"
    # Every candidate is scored: 5 correct + 7 incorrect for the first question.
    assert len(first.choices) == 12 and sum(first.correct) == 5


def lm_eval_loglik(model, tok, context, continuation):
    """lm-evaluation-harness's loglikelihood, one request at a time, no padding (its reference method)."""
    whole = tok(context + continuation)["input_ids"]
    ctx = tok(context)["input_ids"]
    cont = whole[len(ctx):]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([whole])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    return sum(float(logp[len(ctx) - 1 + j, t]) for j, t in enumerate(cont)), len(cont)


@pytest.mark.parametrize("model_fixture", ["smollm2_dir", "tiny_gemma_materialized"])
def test_batched_scores_equal_lm_eval_method_on_real_items(model_fixture, request):
    from selfalign.models import load

    model, tok, _ = load(request.getfixturevalue(model_fixture))
    items = eval_data.load_hhh(EVAL / "hhh")[:3] + eval_data.load_truthfulqa(EVAL / "truthfulqa/TruthfulQA.csv")[:2]
    reqs = [r for it in items for r in evaluate.requests(it, "Sage")]
    # With and without the shared-question cache; the tiny Gemma's 8-token sliding window is far shorter
    # than these questions, so its windows reach back into the cached part.
    batched = evaluate.score(model, tok, reqs, prefix_cache=True)
    assert [n for _, n in batched] == [n for _, n in evaluate.score(model, tok, reqs, prefix_cache=False)]
    for (ctx, cont), (s, n) in zip(reqs, batched):
        ref, ref_n = lm_eval_loglik(model, tok, ctx, cont)
        assert n == ref_n and s == pytest.approx(ref, abs=2e-3, rel=1e-5)
    rows = evaluate.grade(items, batched)
    assert [r["benchmark"] for r in rows] == ["hhh"] * 3 + ["truthfulqa"] * 2
    assert all(0 <= r["mc2"] <= 1 for r in rows[3:])


def test_a_model_trained_to_prefer_an_answer_scores_it_higher(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    item = eval_data.MCItem("t/0", "hhh", "helpful", "What colour is a clear daytime sky?",
                         ("It is green with purple stripes.", "It is blue."), (False, True))
    (ctx, wrong), (_, right) = evaluate.requests(item, "Sage")
    before = evaluate.grade([item], evaluate.score(model, tok, [(ctx, wrong), (ctx, right)]))[0]
    ids = torch.tensor([tok(ctx + right)["input_ids"]])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(30):
        opt.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    model.eval()
    (w, _), (r, _) = evaluate.score(model, tok, [(ctx, wrong), (ctx, right)])
    assert r > w
    after = evaluate.grade([item], [(w, 1), (r, 1)])[0]
    assert after["acc"] == 1.0 and before["acc"] in (0.0, 1.0)


def test_mc_grading_by_hand():
    item = eval_data.MCItem("truthfulqa/0", "truthfulqa", "x", "q?", ("best", "also right", "wrong", "very wrong"),
                         (True, True, False, False), best=0)
    # 'also right' has the highest sum, but MC1 compares the best answer with incorrect ones only.
    rows = evaluate.grade([item], [(-2.0, 2), (-1.0, 1), (-3.0, 1), (-4.0, 4)])
    assert rows[0]["mc1"] == 1.0 and rows[0]["mc1_mean"] == 1.0
    import math
    p = [math.exp(x) for x in (-2.0, -1.0, -3.0, -4.0)]
    assert rows[0]["mc2"] == pytest.approx((p[0] + p[1]) / sum(p))


def test_malformed_eval_files_stop_with_a_clear_error(tmp_path):
    csv = tmp_path / "tqa.csv"
    csv.write_text("Type,Category,Question,Best Answer,Correct Answers\nA,B,Why?,Because,Because\n")
    with pytest.raises(InputError, match=r"tqa.csv: missing column\(s\) Incorrect Answers"):
        eval_data.load_truthfulqa(csv)
    for cat in eval_data.HHH_CATEGORIES:
        (tmp_path / "hhh" / cat).mkdir(parents=True)
        (tmp_path / "hhh" / cat / "task.json").write_text(json.dumps({"examples": [{"input": "hi", "target_scores": {"a": 1, "b": 0}}]}))
    (tmp_path / "hhh" / "honest" / "task.json").write_text(json.dumps({"examples": [{"input": "hi", "target_scores": {"a": 1}}]}))
    with pytest.raises(InputError, match=r"honest/task.json: examples\[0\] needs 'input' text and 'target_scores'"):
        eval_data.load_hhh(tmp_path / "hhh")
