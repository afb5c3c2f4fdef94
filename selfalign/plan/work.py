"""How much work each stage is: items in and out, its prompts, and the units its time is measured in.

The same function sizes the planned run (params.yaml, with the counts the stages are expected to yield)
and the last run (the params dvc.lock recorded, with the counts its metrics report), so a rate measured
on the last run (seconds per unit) applies to the plan unit for unit. The units need no tokenizer:

- generation jobs: the token budget, prompts x max_new_tokens (what a job can generate at most);
- training: examples seen (pairs x epochs, or max_steps x the global batch);
- multiple-choice scoring: characters scored (context + candidate, every candidate, every checkpoint).
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from selfalign.core.files import InputError, iter_jsonl_lines
from selfalign.data import eval_sets
from selfalign.data.paths import CHECKPOINTS, RECORD_FILES

# Inputs the stages read, as the rules name them (rules/*.smk).
SEEDS = "data/seeds/self_instruct.jsonl"
TYPES = "data/seeds/red_team_types.jsonl"
PRINCIPLES = "principles/principles.yaml"
EXEMPLARS = "principles/exemplars.yaml"
EVAL = dict(hhh="data/eval/hhh", truthfulqa="data/eval/truthfulqa/TruthfulQA.csv",
            truthfulqa_mc="data/eval/truthfulqa_bigbench/task_mc.json", xstest="data/eval/xstest/xstest_prompts.csv")
# Prompts rendered per stage to measure prompt lengths (a sample: align's are all alike but for the query).
PROMPT_SAMPLE = 16


@dataclass
class Part:
    """One kind of job of a stage: `jobs` of them, `units` of work in all (see the module's docstring)."""
    name: str  # generate | collect | train | score | prepare
    jobs: int
    units: float = 0.0


@dataclass
class StageWork:
    stage: str
    items_in: int | None  # prompts, pairs or eval items (None: unknown until an upstream stage has run)
    expected_out: int | None
    parts: list[Part]
    prompts: list[str] = field(default_factory=list)  # a sample of its prompts (generation and scoring)
    max_new_tokens: int | None = None
    concurrency: int | None = None  # generation: sequences decoded together
    what: str = ""  # what goes in and out, in words
    scored: list[tuple[str, str]] = field(default_factory=list)  # eval: every (context, candidate) it scores


def counts_from_metrics(metrics_dir: str | Path) -> dict:
    """The last run's counts, from metrics/<stage>.json: {stage: metrics} for the stages that have one."""
    out = {}
    for path in sorted(Path(metrics_dir).glob("*.json")):
        try:
            out[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return out


def _share(m: dict, num: str, den: str) -> float | None:
    if m.get(den):
        return m.get(num, 0) / m[den]
    return None


def _scale(n: float | None, share: float | None) -> int | None:
    return None if n is None or share is None else int(round(n * share))


def expected(params: dict, last: dict, last_params: dict | None, *, types: int) -> dict:
    """The counts the planned run should yield per stage, from params and the last run's shares (kept of
    generated; topic generations per type and sample, which counts its extra rounds); where the last run
    has no figure, the most a stage can yield."""
    from selfalign.stages import queries

    t, q, a = params["topics"], params["queries"], params["align"]
    lt, lq, la, lv = (last.get(s, {}) for s in ("topics", "queries", "align", "verbose"))
    rounds = 1.0  # generations per (type, sample): 1 + the share of types that needed another round
    if lt.get("types") and last_params:
        rounds = lt["generations"] / (lt["types"] * last_params["topics"]["samples_per_type"])
    topic_gens = int(round(types * t["samples_per_type"] * min(rounds, t["max_rounds"])))
    kept_topics = min(types * t["max_per_type"], _scale(topic_gens, _share(lt, "kept", "generations"))
                      or types * t["max_per_type"])
    query_gens = queries.self_instruct_prompt_count(params) + kept_topics * q["questions_per_topic_prompt"]
    pool = _scale(query_gens, _share(lq, "kept", "generations"))
    # The share of the pool that matched eval questions (align removes them before it samples).
    contaminated = la.get("removed_eval_contamination", 0) / lq["kept"] if lq.get("kept") else 0.0
    answered = None if pool is None else min(a["max_queries"], int(round(pool * (1 - contaminated))))
    aligned = _scale(answered, _share(la, "kept", "generations"))
    verbose = _scale(aligned, _share(lv, "kept", "generations"))
    return {"topics": {"generations": topic_gens, "kept": kept_topics},
            "queries": {"generations": query_gens, "kept": pool},
            "align": {"generations": answered, "kept": aligned},
            "verbose": {"generations": aligned, "kept": verbose}}


def actual(last: dict) -> dict:
    """The last run's counts in the shape `expected` gives."""
    return {s: {"generations": last.get(s, {}).get("generations"), "kept": last.get(s, {}).get("kept")}
            for s in ("topics", "queries", "align", "verbose")}


def _examples(train: dict, pairs: int | None) -> tuple[int | None, int | None]:
    """(examples seen, optimizer steps) of a training job on `pairs`."""
    if pairs is None:
        return None, None
    batch = train["batch_size"] * train["processes"] * train["grad_accum"]
    if train["max_steps"] > 0:
        return train["max_steps"] * batch, train["max_steps"]
    steps = math.ceil(pairs / batch) * train["epochs"] if pairs else 0
    return pairs * train["epochs"], steps


def _records(root: Path, name: str, limit: int) -> list[dict]:
    path = root / RECORD_FILES[name]
    if not path.exists():
        return []
    try:
        return [r for _, r in itertools.islice(iter_jsonl_lines(path), limit)]
    except InputError:  # a broken output of an earlier run: the plan then measures prompts without it
        return []


def mc_requests(params: dict, root: Path) -> list[tuple[str, str]]:
    """Every (context, candidate) the eval scores per checkpoint, as scripts/evaluate.py builds them."""
    from selfalign.eval import multiple_choice

    ev, seed = params["eval"], params["seed"]
    items = (eval_sets.load_hhh(root / EVAL["hhh"], per_category=ev["hhh_per_category"], seed=seed)
             + eval_sets.load_truthfulqa_mc(root / EVAL["truthfulqa_mc"], max_questions=ev["truthfulqa_mc_questions"],
                                            seed=seed)
             + eval_sets.load_truthfulqa(root / EVAL["truthfulqa"], max_questions=ev["truthfulqa_questions"], seed=seed))
    return [r for it in items for r in multiple_choice.requests(it, params["align"]["assistant_name"])]


def stage_work(params: dict, counts: dict, root: str | Path = ".", *, with_prompts: bool = True) -> dict[str, StageWork]:
    """Every stage's work under `params`, given the counts (`expected` or `actual`) it runs on."""
    from selfalign.data import principles as pr
    from selfalign.data.seeds import load_question_types, load_self_instruct
    from selfalign.data.templates import Template
    from selfalign.eval import xstest
    from selfalign.stages import align, queries, topics, verbose

    root = Path(root)
    g, t, q, a, tr, v, ev = (params[k] for k in ("generation", "topics", "queries", "align", "train", "verbose", "eval"))
    shards, seqs = g["shards"], g["max_num_seqs"] if g["backend"] == "vllm" else g["batch_size"]
    assistant = a["assistant_name"]
    types = load_question_types(root / TYPES)
    seeds = load_self_instruct(root / SEEDS)
    c = counts
    out: dict[str, StageWork] = {}

    def gen(stage, n, cap, kept, prompts, what):
        jobs = min(shards, n) if n else 0
        return StageWork(stage, n, kept, [Part("generate", jobs, (n or 0) * cap), Part("collect", 1)],
                         prompts=prompts if with_prompts else [], max_new_tokens=cap, concurrency=seqs, what=what)

    out["model"] = StageWork("model", 1, 1, [Part("prepare", 1)], what=f"`{params['model']['name']}` → models/base")

    prompts = []
    if with_prompts:
        prompts = [it.prompt for it in topics.build_items(types[:PROMPT_SAMPLE], Template(root / "templates/topics.j2"),
                                                              1)]
    n = c["topics"]["generations"]
    out["topics"] = gen("topics", n, t["decoding"]["max_new_tokens"], c["topics"]["kept"], prompts,
                        f"{len(types)} question types → topics")

    n = c["queries"]["generations"]
    if with_prompts:
        kept_topics = _records(root, "topics", PROMPT_SAMPLE) or [
            {"id": f"{ty['id']}-t0", "type_id": ty["id"], "topic": ty["topics"][0]} for ty in types[:PROMPT_SAMPLE]]
        prompts = [it.prompt for it in queries.build_items(
            seeds, types, kept_topics, Template(root / "templates/self_instruct.j2"),
            Template(root / "templates/red_team_questions.j2"), self_instruct_prompts=min(queries.self_instruct_prompt_count(params), 8),
            demos_per_prompt=q["demos_per_prompt"], questions_per_topic_prompt=1, seed=params["seed"])]
    out["queries"] = gen("queries", n, q["decoding"]["max_new_tokens"], c["queries"]["kept"], prompts,
                         f"{queries.self_instruct_prompt_count(params)} self-instruct prompts + topics × {q['questions_per_topic_prompt']}"
                         " → queries")

    n = c["align"]["generations"]
    if with_prompts:
        active, exemplars, version = pr.load_alignment_text(root / PRINCIPLES, root / EXEMPLARS,
                                                            params["principles"]["exclude"])
        pool = _records(root, "queries", PROMPT_SAMPLE) or [
            {"id": s["id"], "query": s["instruction"]} for s in seeds[:PROMPT_SAMPLE]]
        prompts = [it.prompt for it in align.build_items(
            pool, Template(root / "templates/align.j2"), assistant=assistant, identity=a["identity"],
            principles=active, exemplars=exemplars, principles_version=version)]
    out["align"] = gen("align", n, a["decoding"]["max_new_tokens"], c["align"]["kept"], prompts,
                       f"queries (at most {a['max_queries']}) → aligned answers")

    for stage, pairs, source in (("engrave", c["align"]["kept"], "aligned"), ("verbose_clone", c["verbose"]["kept"],
                                                                             "verbose")):
        examples, steps = _examples(tr, pairs)
        out[stage] = StageWork(stage, pairs, steps, [Part("train", 1, examples or 0)],
                               what=f"{source} pairs × {tr['epochs'] if tr['max_steps'] <= 0 else '-'} epochs, "
                                    f"{tr['method']}, ZeRO-{tr['zero_stage']}, {tr['processes']} process(es) → steps")

    n = c["verbose"]["generations"]
    if with_prompts:
        kept = _records(root, "aligned", PROMPT_SAMPLE) or [
            {"id": s["id"], "query": s["instruction"]} for s in seeds[:PROMPT_SAMPLE]]
        prompts = [it.prompt for it in verbose.build_items(kept, Template(root / "templates/verbose.j2"),
                                                             assistant=assistant, instruction=v["instruction"])]
    out["verbose"] = gen("verbose", n, v["decoding"]["max_new_tokens"], c["verbose"]["kept"], prompts,
                         "aligned answers → long answers")

    xs = eval_sets.load_xstest(root / EVAL["xstest"], max_prompts=ev["xstest_prompts"], seed=params["seed"])
    reqs = mc_requests(params, root)
    checkpoints = len(CHECKPOINTS)
    xs_items = xstest.build_items(xs, assistant)
    graded = len(xs) + len({ctx for ctx, _ in reqs})  # XSTest prompts and MC items, graded per checkpoint
    out["eval"] = StageWork(
        "eval", graded, graded * checkpoints,
        # Generation, one job per shard: each checkpoint's answers to XSTest's prompts and the held-out queries,
        # and the fidelity teacher's (base with the principles) to the same prompts, at align's length; one rate.
        [Part("generate", min(shards, len(xs)),
              (len(xs) + a["heldout_queries"]) * (checkpoints * ev["xstest_max_new_tokens"]
                                                  + a["decoding"]["max_new_tokens"])),
         Part("score", 1, checkpoints * sum(len(ctx) + len(x) for ctx, x in reqs))],
        prompts=[it.prompt for it in xs_items[:PROMPT_SAMPLE]] if with_prompts else [],
        max_new_tokens=ev["xstest_max_new_tokens"], concurrency=seqs,
        what=f"{len(xs)} XSTest prompts and {a['heldout_queries']} held-out queries answered by {checkpoints} checkpoints "
             f"and the teacher; {len(reqs)} MC candidates scored × {checkpoints}")
    out["eval"].scored = reqs
    return out
