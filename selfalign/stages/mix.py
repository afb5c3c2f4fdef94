"""The mix of a dataset by origin: red-team vs self-instruct queries (the `source` every query record
carries, and every aligned and verbose record inherits), a stratified seeded sample that reaches a
planned red-team share, and the refusal share per origin and per red-team type.

SELF-ALIGN's prompt pool is mostly ordinary self-instruct requests with the red-team part added for
coverage: a pool that is mostly adversarial teaches a model that declining is the usual answer.
"""
from __future__ import annotations

import math
import random
from collections import Counter

ORIGINS = ("self_instruct", "red_team")


def counts(records: list[dict]) -> dict:
    """{"self_instruct": n, "red_team": n, "red_team_share": share} of records with a `source`."""
    c = Counter(r.get("source") for r in records)
    n = sum(c[o] for o in ORIGINS)
    return {**{o: c[o] for o in ORIGINS}, "red_team_share": round(c["red_team"] / n, 4) if n else None}


def stratified_sample(queries: list[dict], n: int, red_team_share: float | None, rng: random.Random) -> list[dict]:
    """At most `n` of `queries` (in the order given), `red_team_share` of them red-team.

    None keeps the pool's own mix (a plain sample). When one origin has too few queries for its share,
    all of them are taken and the other origin is cut to keep the share: the mix is the point, the
    count is at most `n` (both are in the metrics)."""
    if red_team_share is None:
        return queries if len(queries) <= n else rng.sample(queries, n)
    by = {o: [q for q in queries if q.get("source") == o] for o in ORIGINS}
    want_rt = round(n * red_team_share)
    want = {"red_team": want_rt, "self_instruct": n - want_rt}
    missing = [o for o in ORIGINS if want[o] and not by[o]]
    if missing:
        from selfalign.core.files import InputError

        raise InputError(f"align.red_team_share: {red_team_share} asks for {want[missing[0]]} {missing[0]} queries of "
                         f"{n}, and the query pool has none; set it to null to sample the pool as it comes")
    # The origin that is short sets the total the share allows.
    scale = min(1.0, *(len(by[o]) / want[o] for o in ORIGINS if want[o]))
    take = {o: min(len(by[o]), math.floor(want[o] * scale + 1e-9)) for o in ORIGINS}
    return [q for o in ORIGINS for q in (by[o] if take[o] >= len(by[o]) else rng.sample(by[o], take[o]))]


def refusal_shares(records: list[dict]) -> dict:
    """The share of records whose answer the refusal detector calls a refusal (`refusal`), per origin
    and per red-team type (`type_id`), with the counts it is a share of."""
    out: dict = {}
    for o in ORIGINS:
        rows = [r for r in records if r["source"] == o]
        out[o] = {"n": len(rows), "refusals": sum(bool(r["refusal"]) for r in rows),
                  "share": round(sum(bool(r["refusal"]) for r in rows) / len(rows), 4) if rows else None}
    by_type: dict = {}
    for r in records:
        if r["source"] == "red_team":
            t = by_type.setdefault(r["type_id"], {"n": 0, "refusals": 0})
            t["n"] += 1
            t["refusals"] += bool(r["refusal"])
    out["red_team_by_type"] = {k: v | {"share": round(v["refusals"] / v["n"], 4)} for k, v in sorted(by_type.items())}
    return out
