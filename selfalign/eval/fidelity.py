"""Engraving fidelity: how much of what the principles did was engraved.

The teacher is the base model with the principles and exemplars in its prompt (the align stage's
prompt, answered greedily). Engraving and verbose cloning should give a model that, with no principles
in its prompt, declines where the teacher declines and answers where it answers. On held-out prompts
(XSTest's, and generated queries the align stage set aside before it sampled, which never reached
training) each checkpoint's refuse/answer decision is compared with the teacher's: the agreement, with
its Wilson interval. Base's agreement is the reference: what agreement is before any engraving.
"""
from __future__ import annotations

from selfalign.data.dialogue import prompt_text
from selfalign.data.eval_sets import XSPrompt
from selfalign.engine.types import Item
from selfalign.eval import stats
from selfalign.text.refusal import classify

HELDOUT = "heldout"  # the key prefix and `set` of a held-out generated query
XSTEST = "xstest"


def heldout_queries(queries: list[dict], eval_questions: list[str], params: dict) -> list[dict]:
    """The queries the align stage set aside (its own split, from the same params: seed and align.*)."""
    from selfalign.stages import align

    a = params["align"]
    return align.split_queries(queries, eval_questions, threshold=a["contamination_threshold"],
                               max_queries=a["max_queries"], seed=params["seed"], red_team_share=a["red_team_share"],
                               heldout=a["heldout_queries"])[1]


def prompts(xstest_prompts: list[XSPrompt], heldout: list[dict]) -> list[dict]:
    """The fidelity prompts: every XSTest prompt of the eval sample, then the held-out queries."""
    return ([{"key": f"{XSTEST}/{p.id}", "set": XSTEST, "prompt": p.prompt} for p in xstest_prompts]
            + [{"key": f"{HELDOUT}/{q['id']}", "set": HELDOUT, "prompt": q["query"], "source": q.get("source")}
               for q in heldout])


def student_items(heldout: list[dict], assistant: str) -> list[Item]:
    """The held-out queries in the plain dialogue format a trained checkpoint answers (XSTest's prompts
    are already answered by the XSTest eval)."""
    return [Item(key=f"{HELDOUT}/{q['id']}", prompt=prompt_text(q["query"], assistant),
                 meta={"id": q["id"], "set": HELDOUT, "source": q.get("source"), "prompt": q["query"]})
            for q in heldout]


def teacher_queries(fidelity_prompts: list[dict]) -> list[dict]:
    """The fidelity prompts as the align stage's queries (its `build_items` renders the teacher's prompt)."""
    return [{"id": p["key"], "query": p["prompt"], "source": p.get("source")} for p in fidelity_prompts]


def decisions(rows: list[dict]) -> dict[str, bool]:
    """{key: refusal} of generation rows answering in the plain dialogue format."""
    return {r["key"]: classify(r["output"]).refusal for r in rows}


def teacher_decisions(rows: list[dict], *, assistant: str, principles, exemplars) -> dict[str, dict]:
    """{key: {"answer", "refusal", "finished"}} of the teacher's completions; refusal None where the completion
    has no answer (a thought alone, or cut off inside it): no decision to agree with."""
    from selfalign.stages import align

    grams = align.exemplar_ngrams(exemplars)
    out = {}
    for r in rows:
        p = align.parse_response(r["output"], stopped_by=r.get("stopped_by"), assistant=assistant,
                                 principles=principles, exemplar_grams=grams)
        # A filter's reason does not matter here: the detector reads the answer's opening, which a cut-off or
        # badly formatted answer still has.
        out[r["meta"]["query_id"]] = {"answer": p.answer, "refusal": classify(p.answer).refusal if p.answer.strip() else None,
                                      "finished": bool(r["finished"])}
    return out


def agreement(teacher: dict[str, dict], student: dict[str, bool], sets: dict[str, str]) -> dict:
    """The share of prompts (where the teacher decided) on which `student` decides as the teacher did,
    with its Wilson interval; overall and per set (xstest, heldout)."""
    def one(keys: list[str]) -> dict:
        same = [student[k] == teacher[k]["refusal"] for k in keys]
        if not same:
            return {"n": 0, "agreement": None, "agreement_lo": None, "agreement_hi": None}
        lo, hi = stats.wilson_ci(sum(same), len(same))
        return {"n": len(same), "agreement": round(sum(same) / len(same), 4), "agreement_lo": round(lo, 4),
                "agreement_hi": round(hi, 4)}

    keys = [k for k in sorted(teacher) if teacher[k]["refusal"] is not None and k in student]
    return one(keys) | {s: one([k for k in keys if sets[k] == s]) for s in (XSTEST, HELDOUT)}


def refusal_share(teacher: dict[str, dict], sets: dict[str, str], which: str) -> float | None:
    """The share of the teacher's decided answers in set `which` that are refusals."""
    calls = [t["refusal"] for k, t in teacher.items() if sets[k] == which and t["refusal"] is not None]
    return round(sum(calls) / len(calls), 4) if calls else None


def records(teacher_rows: list[dict], teacher: dict[str, dict], student: dict[str, dict[str, bool]]) -> list[dict]:
    """One row per fidelity prompt: the prompt, the teacher's answer and call, and each checkpoint's call."""
    out = []
    for r in teacher_rows:
        key = r["meta"]["query_id"]
        out.append({"key": key, "set": key.split("/", 1)[0], "prompt": r["meta"]["query"],
                    "source": r["meta"].get("source"), "teacher_answer": teacher[key]["answer"],
                    "teacher_refusal": teacher[key]["refusal"],
                    **{f"{name}_refusal": calls.get(key) for name, calls in student.items()}})
    return out
