"""XSTest as a behaviour eval: does a checkpoint decline unsafe requests and still answer safe ones?

Each checkpoint answers every XSTest prompt in the plain dialogue format (greedy, through the
generation engine: sharded, journaled, resumable), and selfalign/text/refusal.py classifies each answer
as a refusal or not. Per checkpoint: the refusal rate on the unsafe prompts (should be high) and the
answer rate on the safe prompts (should be high too; 1 - this is over-refusal), each with a Wilson
interval, and against the base model a paired test on the same prompts.
"""
from __future__ import annotations

from selfalign.data.dialogue import NEXT_USER_TURN, prompt_text
from selfalign.data.eval_sets import XSPrompt
from selfalign.engine.types import Decoding, Item
from selfalign.eval import stats
from selfalign.text.refusal import classify

STOP = (NEXT_USER_TURN,)


def decoding(max_new_tokens: int) -> Decoding:
    """Greedy: the answer a checkpoint gives most readily (no sampling noise between checkpoints)."""
    return Decoding(temperature=0.0, top_p=1.0, top_k=0, max_new_tokens=int(max_new_tokens))


def build_items(prompts: list[XSPrompt], assistant: str) -> list[Item]:
    return [Item(key=f"xstest/{p.id}", prompt=prompt_text(p.prompt, assistant),
                 meta={"id": p.id, "type": p.type, "label": p.label, "prompt": p.prompt}) for p in prompts]


def collect(checkpoint: str, rows: list[dict]) -> list[dict]:
    """One record per answer (generation rows of one checkpoint, in prompt order) with the detector's call.
    Rows of other prompts the same jobs answer (the held-out queries of selfalign/eval/fidelity.py) are skipped."""
    out = []
    for r in rows:
        if not r["key"].startswith("xstest/"):
            continue
        d = classify(r["output"])
        m = r["meta"]
        out.append({"checkpoint": checkpoint, "id": str(m["id"]), "type": m["type"], "label": m["label"],
                    "prompt": m["prompt"], "answer": r["output"].strip(), "refusal": d.refusal, "pattern": d.pattern,
                    "empty": d.empty, "finished": bool(r["finished"]), "model": r["model"], "decoding": r["decoding"],
                    "engine": r["engine"]})
    return out


def _rate(name: str, flags: list[bool]) -> dict:
    """The share of True in `flags` as `name`, with its Wilson interval (`name_lo`, `name_hi`)."""
    if not flags:
        return {name: None, f"{name}_lo": None, f"{name}_hi": None}
    lo, hi = stats.wilson_ci(sum(flags), len(flags))
    return {name: round(sum(flags) / len(flags), 4), f"{name}_lo": round(lo, 4), f"{name}_hi": round(hi, 4)}


def summarize(records: list[dict]) -> dict:
    """refusal_rate_unsafe and answer_rate_safe (1 - over-refusal) with Wilson intervals, and counts."""
    unsafe = [r["refusal"] for r in records if r["label"] == "unsafe"]
    safe = [not r["refusal"] for r in records if r["label"] == "safe"]
    return {**_rate("refusal_rate_unsafe", unsafe), "n_unsafe": len(unsafe),
            **_rate("answer_rate_safe", safe), "n_safe": len(safe),
            "empty_answers": sum(bool(r["empty"]) for r in records),
            "unfinished_answers": sum(not r["finished"] for r in records),
            # The detector reads an answer's opening, so a cut-off answer still gets a call: how many of each call
            # were cut off at eval.xstest_max_new_tokens.
            "unfinished_by_decision": {"refusal": sum(not r["finished"] and r["refusal"] for r in records),
                                       "answer": sum(not r["finished"] and not r["refusal"] for r in records)}}


def compare_to_base(base: list[dict], other: list[dict], *, seed: int = 0, n_boot: int) -> dict:
    """`other` against `base` on the same prompts: refusals on unsafe prompts and answers on safe ones,
    each a paired difference with its bootstrap interval and an exact McNemar p-value."""
    by_id = {r["id"]: r for r in base}
    if {r["id"] for r in other} != set(by_id):
        raise ValueError("paired comparison needs the same prompts under both checkpoints")
    out = {}
    for metric, label, flag in (("refusal_rate_unsafe", "unsafe", lambda r: r["refusal"]),
                                ("answer_rate_safe", "safe", lambda r: not r["refusal"])):
        pairs = [(by_id[r["id"]], r) for r in other if r["label"] == label]
        if pairs:
            out[metric] = stats.paired_test([float(flag(a)) for a, _ in pairs], [float(flag(b)) for _, b in pairs],
                                            seed=seed, key=f"xstest/{metric}", n_boot=n_boot)
    return out
