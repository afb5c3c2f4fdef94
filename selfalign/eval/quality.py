"""How well the stage filters keep good outputs and drop bad ones, on hand-labelled outputs.

tests/data/quality/labels.jsonl holds outputs of the default pipeline, each read and labelled `good`
or `bad` by a person (criteria: tests/data/quality/CRITERIA.md), kept and rejected ones alike. The
filters of the current code and params run over them again: precision is the share of the kept
outputs that are good, recall the share of the good outputs that are kept (`bench/quality.py`).
"""
from __future__ import annotations

import copy
from pathlib import Path

from selfalign.data import principles
from selfalign.data.paths import GENERATION_STAGES
from selfalign.stages import align, queries, topics, verbose

FIGURES_FILE = "bench/quality.json"  # what `bench/quality.py --json` writes: figures(), for the README and the report


def only_filters(filters: dict, *names: str) -> dict:
    """`align.filters` with just `names` switched on (none: the format checks alone, the baseline)."""
    return {k: (None if k == "off_topic" else k in names) for k in filters}


def kept_by_filters(label: dict, params: dict, *, active: list, exemplar_grams: set) -> bool:
    """Whether the stage's filters, as configured in `params`, keep this labelled output."""
    stage = label["stage"]
    if not label.get("complete", True):
        return False  # cut off by max_new_tokens: the parser drops it before any filter
    if stage == "topics":
        return topics.clean_topic(label["text"], params["topics"]["max_words"])[1] is None
    if stage == "queries":
        q = params["queries"]
        return queries.filter_reason(label["text"], min_words=q["min_words"], max_words=q["max_words"]) is None
    if stage == "align":
        a = params["align"]
        p = align.judge(label["output"], stopped_by=label["stopped_by"], relevance=label["relevance"],
                        assistant=a["assistant_name"], principles=active,
                        exemplar_grams=exemplar_grams, filters=a["filters"], source=label.get("source"))
        return p.reason is None
    if stage == "verbose":
        # Complete outputs only reach this line, and the filter asks only whether one ran out of tokens.
        v, assistant = params["verbose"], params["align"]["assistant_name"]
        return verbose.filter_reason(label["output"], stopped_by="finished", assistant=assistant,
                                     min_words=v["min_words"], filters=v["filters"], source=label.get("source"),
                                     principle_names=[p.name for p in active],
                                     instruction=verbose.instruction_text(v["instruction"], assistant)) is None
    raise ValueError(f"label of unknown stage {stage!r}")


def score_filters(labels: list[dict], params: dict, *, root: str | Path) -> list[dict]:
    """Per stage: labelled, good, kept, kept_good, precision, recall (None where nothing is kept, or nothing good)."""
    root = Path(root)
    active, exemplars, _ = principles.load_alignment_text(root / "principles/principles.yaml", root / "principles/exemplars.yaml",
                                           params["principles"]["exclude"])
    grams = align.exemplar_ngrams(exemplars)
    rows = []
    for stage in GENERATION_STAGES:
        mine = [lb for lb in labels if lb["stage"] == stage]
        if not mine:
            continue
        keep = [kept_by_filters(lb, params, active=active, exemplar_grams=grams) for lb in mine]
        good = [lb["label"] == "good" for lb in mine]
        kept_good = sum(k and g for k, g in zip(keep, good))
        rows.append({"stage": stage, "labelled": len(mine), "good": sum(good), "kept": sum(keep), "kept_good": kept_good,
                     "precision": round(kept_good / sum(keep), 4) if sum(keep) else None,
                     "recall": round(kept_good / sum(good), 4) if sum(good) else None})
    return rows


def filter_table(labels: list[dict], params: dict, *, root: str | Path) -> list[dict]:
    """Each align content filter on its own, against the format checks alone: how many labelled answers it
    drops, the share of those that are bad (its precision as a detector of bad answers) and the share of
    the bad answers past the format checks that it drops (its recall)."""
    root = Path(root)
    active, exemplars, _ = principles.load_alignment_text(root / "principles/principles.yaml",
                                                          root / "principles/exemplars.yaml", params["principles"]["exclude"])
    grams = align.exemplar_ngrams(exemplars)
    mine = [lb for lb in labels if lb["stage"] == "align"]

    def kept(filters: dict) -> list[bool]:
        p = copy.deepcopy(params)
        p["align"]["filters"] = filters
        return [kept_by_filters(lb, p, active=active, exemplar_grams=grams) for lb in mine]

    base = kept(only_filters(params["align"]["filters"]))
    bad = [lb["label"] == "bad" for lb in mine]
    bad_past_format = sum(b and k for b, k in zip(bad, base))
    rows = []
    for name in params["align"]["filters"]:
        if name == "off_topic":
            continue
        dropped = [k0 and not k for k0, k in zip(base, kept(only_filters(params["align"]["filters"], name)))]
        n, n_bad = sum(dropped), sum(d and b for d, b in zip(dropped, bad))
        rows.append({"filter": name, "on": bool(params["align"]["filters"][name]), "dropped": n, "dropped_bad": n_bad,
                     "precision": round(n_bad / n, 4) if n else None,
                     "recall": round(n_bad / bad_past_format, 4) if bad_past_format else None})
    return rows


FORMAT_ONLY = "align (format checks only)"


def figures(labels: list[dict], params: dict, *, root: str | Path) -> dict:
    """What `bench/quality.py --json` writes and the README shows: per stage with the configured filters (align
    preceded by its baseline, the format checks only) and per align filter."""
    base = copy.deepcopy(params)
    base["align"]["filters"] = only_filters(params["align"]["filters"])
    before = next(r | {"stage": FORMAT_ONLY} for r in score_filters(labels, base, root=root) if r["stage"] == "align")
    stages = [row for r in score_filters(labels, params, root=root) for row in ([before, r] if r["stage"] == "align" else [r])]
    return {"stages": stages, "align_filters": filter_table(labels, params, root=root)}
