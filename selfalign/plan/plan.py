"""The plan of a run: per stage that `dvc repro` would run, its work, time and memory, and the totals."""
from __future__ import annotations

import copy
import json
from pathlib import Path

from selfalign.audit import timings
from selfalign.core.config import get_key, load_params
from selfalign.core.files import InputError, read_yaml, write_json
from selfalign.data.paths import STAGES
from selfalign.plan import estimate as est
from selfalign.plan import work as wk
from selfalign.plan.pending import pending

SNAPSHOT = "bench/pipeline_timings.json"  # the committed run's timings (selfalign timings --write)
SAVED = ".selfalign/plan.json"  # the last plan printed here, which `selfalign report` sets beside the run's times


def _set(params: dict, dotted: str, value) -> None:
    node = params
    *head, last = dotted.split(".")
    for part in head:
        node = node.setdefault(part, {})
    node[last] = value


def locked_params(root: Path, params: dict) -> dict | None:
    """The params of the last run: `params` with every value dvc.lock recorded put back (None: no dvc.lock)."""
    path = root / "dvc.lock"
    if not path.exists():
        return None
    lock = read_yaml(path) or {}
    out = copy.deepcopy(params)
    for stage in (lock.get("stages") or {}).values():
        for key, value in ((stage.get("params") or {}).get("params.yaml") or {}).items():
            _set(out, key, value)
    return out


def setup(params: dict) -> dict:
    """The params a rate depends on, as the engine resolves them (generation.compile: auto)."""
    from selfalign.engine.types import Engine

    out = {k: get_key(params, k) for k in est.SETUP}
    out["generation.compile"] = Engine.compiles(params["generation"])
    return out


def measured_work(root: Path, params: dict) -> tuple[dict, dict | None]:
    """(the last run's work per stage, its params) from dvc.lock and metrics/."""
    last_params = locked_params(root, params) or params
    counts = wk.actual(wk.counts_from_metrics(root / "metrics"))
    return wk.stage_work(last_params, counts, root, with_prompts=False), last_params


def work_json(work: dict) -> dict:
    return {s: {p.name: {"jobs": p.jobs, "units": p.units} for p in w.parts} for s, w in work.items()}


def _work_from_json(data: dict) -> dict:
    return {s: wk.StageWork(s, None, None, [wk.Part(n, v["jobs"], v["units"]) for n, v in parts.items()])
            for s, parts in data.items()}


def timings_source(root: Path, params: dict, rates_file: str | None) -> tuple[str, list[dict], dict, dict] | None:
    """(where the timings come from, its jobs, its work per stage, its setup), or None if there are none."""
    if rates_file is None:
        jobs = timings.read_jobs(root)
        # A complete run only: a folder that ran a few stages by hand has no rate for the others.
        if {j["stage"] for j in jobs} >= set(STAGES) - {"check"}:
            work, last = measured_work(root, params)
            ran_on = setup(last) | {"cpu": est.cpu_class()}
            return f"this folder's last run ({timings.BENCHMARKS}/)", jobs, work, ran_on
        if not (root / SNAPSHOT).exists():
            return None
        rates_file = str(root / SNAPSHOT)
    snap = timings.read_snapshot(rates_file)
    if "jobs" not in snap:
        raise InputError(f"{rates_file}: not a timings snapshot (no 'jobs'; write one with `selfalign timings --write`)")
    if "work" in snap:
        work, run_setup = _work_from_json(snap["work"]), snap.get("setup", {})
    else:  # an older snapshot: the run dvc.lock and metrics/ describe
        work, last = measured_work(root, params)
        run_setup = setup(last)
    path = Path(rates_file)
    name = str(path.relative_to(root)) if path.is_absolute() and path.is_relative_to(root) else rates_file
    return name, snap["jobs"], work, run_setup


def build(root: str | Path = ".", *, rates_file: str | None = None, parallel: int = 1,
          stages: list[str] | None = None, gpu_memory: float | None = None) -> dict:
    """The plan as a dict (what `selfalign plan --json` prints). `gpu_memory`: plan memory for GPUs of that
    many GB each (default: this machine's CUDA device if it has one, else its CPU memory)."""
    root = Path(root)
    params = load_params(root / "params.yaml")
    if stages is None:
        stages, check = pending(root)
    else:
        check = "check" in stages
        stages = [s for s in STAGES if s in stages and s != "check"]
    metrics = wk.counts_from_metrics(root / "metrics")
    last_params = locked_params(root, params)
    types = len(read_types(root))
    counts = wk.expected(params, metrics, last_params, types=types)
    work = wk.stage_work(params, counts, root)
    facts, tok = est.model_facts(root, params)
    read_config = facts is not None
    from selfalign.engine.models import EMBEDDED

    device = est.target_device(gpu_memory)
    dtype, bf16, assumed = precision(params, device)
    source = timings_source(root, params, rates_file)
    r, notes, measured = None, [], {}
    scale = 1.0
    if source is not None:
        where, jobs, run_work, run_setup = source
        r = est.rates(jobs, run_work)
        measured = {s["stage"]: s for s in timings.per_stage(jobs)}
        mine = setup(params)
        differ = {k: (run_setup.get(k), v) for k, v in mine.items() if k in run_setup and run_setup[k] != v}
        if differ:
            said = ", ".join(f"{k} {a} (rates) vs {b} (plan)" for k, (a, b) in differ.items())
            if "model.name" in differ and facts and run_setup.get("parameters"):
                scale = facts.parameters / run_setup["parameters"]
                notes.append(f"rates measured under other settings ({said}); scaled by parameters x{scale:.2f}")
            else:
                notes.append(f"rates measured under other settings ({said}): supply matching ones with --rates")
        here = est.cpu_class()
        if run_setup.get("cpu", here) != here:
            notes.append(f"rates measured on an {run_setup['cpu']} CPU, this one is {here}: expect other times "
                         "(a class apart, the same params can take several times as long, and give other bytes)")
        elif "cpu" not in run_setup:
            notes.append(f"{where} does not say which CPU class it was measured on (this one: {here})")
        if facts is None and run_setup.get("model") and run_setup.get("model.name") == params["model"]["name"]:
            # Before the `model` stage has run (a fresh clone): the config of the same model, kept with the rates.
            facts = est.ModelFacts(**run_setup["model"])
            notes.append(f"the model's config is from {where} (the `model` stage has not run here)")
    else:
        where = None
        notes.append(f"no measured run here ({SNAPSHOT} or benchmarks/): times are unknown; run the pipeline once, "
                     "or give another machine's snapshot with --rates")
    if tok is None and read_config:
        notes.append(f"{facts.source} has a config and no tokenizer: prompt tokens are characters / "
                     f"{est.CHARS_PER_TOKEN:g}")
    elif tok is None:
        notes.append(f"no tokenizer before the `model` stage has run: prompt tokens are characters / "
                     f"{est.CHARS_PER_TOKEN:g}")
    g = params["generation"]
    if device.gpu and g["backend"] == "vllm" and g["gpus_per_shard"] < g["tensor_parallel_size"]:
        notes.append(f"generation.gpus_per_shard={g['gpus_per_shard']} is below generation.tensor_parallel_size="
                     f"{g['tensor_parallel_size']}: a shard job must hold every GPU its engine spans")
    if device.gpu:
        notes.append(f"memory planned per GPU of {est.gb(device.memory)} ({device.source})"
                     + (f"; `auto` precision taken as bf16 ({', '.join(assumed)}), which GPUs from Ampere on "
                        "compute natively" if assumed else ""))
    if facts is None:
        notes.append("the model's config is not here yet (the `model` stage writes it): memory is not modelled")

    problems: list[str] = []
    memory_limit = est.machine_memory()
    gpu_limit = device.memory if device.gpu else None
    rows = []
    for stage in stages:
        w = work[stage]
        row = {"stage": stage, "what": w.what, "items_in": w.items_in, "expected_out": w.expected_out}
        mean, most, shared = est.prompt_tokens(w.prompts, tok)
        if stage == "eval":
            mc = est.prompt_tokens([c + x for c, x in w.scored], tok)
            row["scored_tokens"] = {"candidates": len(w.scored), "mean": mc[0]}
        row["prompt_tokens"] = {"mean": mean, "max": most, "shared": shared} if w.prompts else None
        gen = next((p for p in w.parts if p.name == "generate"), None)
        row["new_tokens_at_most"] = int(gen.units) if gen else None
        row["max_new_tokens"] = w.max_new_tokens
        parts, total = [], 0.0
        for p in w.parts:
            item = {"part": p.name, "jobs": p.jobs, "units": p.units}
            sec = None
            if r is not None:
                if p.name in ("generate", "train"):
                    rate = r["rate"].get(stage, {}).get(p.name)
                    if rate is not None and p.jobs:
                        start = r["start"][p.name]
                        sec = est.waves(p.jobs, parallel) * (start + p.units / p.jobs * rate * scale)
                        item |= {"start_s": start, "s_per_unit": rate * scale}
                    elif not p.jobs:
                        sec = 0.0
                elif p.name == "score":
                    rate = r["rate"].get(stage, {}).get("score")
                    if rate is not None:
                        sec = p.units * rate * scale
                        item["s_per_unit"] = rate * scale
                elif p.name == "prepare" and params["model"]["name"] not in EMBEDDED:
                    sec = 1.0  # a folder or hub id: the stage writes a manifest only
                else:
                    fixed = r["fixed"].get(stage, {}).get(p.name)
                    sec = None if fixed is None else fixed * p.jobs
            item["seconds"] = None if sec is None else round(sec, 1)
            parts.append(item)
            total = None if sec is None or total is None else total + sec
        row["parts"] = parts
        row["seconds"] = None if total is None else round(total, 1)
        row["measured"] = measured.get(stage)
        said = len(problems)
        row["memory"] = _memory(stage, w, facts, params, dtype, bf16, most, device, problems, notes)
        own = len(problems) > said  # the stage's own reason (weights, KV cache) says more than its total
        if device.gpu and not own and gpu_limit and row["memory"] and row["memory"]["per_gpu"] > gpu_limit:
            problems.append(f"{stage}: needs about {est.gb(row['memory']['per_gpu'])} per GPU, the GPUs have "
                            f"{est.gb(gpu_limit)}{_what_takes_it(row['memory'])}")
        elif not device.gpu and memory_limit and row["memory"] and row["memory"]["peak"] > memory_limit:
            problems.append(f"{stage}: needs about {est.gb(row['memory']['peak'])} of memory, this machine has "
                            f"{est.gb(memory_limit)}")
        if facts and facts.context and w.max_new_tokens and w.prompts and most + w.max_new_tokens > facts.context:
            setting = {"eval": "eval.xstest_max_new_tokens"}.get(stage, f"{stage}.decoding.max_new_tokens")
            problems.append(f"params.yaml: {setting}={w.max_new_tokens}: the longest {stage} prompt is {most:,} tokens, "
                            f"and with {w.max_new_tokens} more it exceeds the model's context of {facts.context:,}")
        if facts and facts.context and stage in ("engrave", "verbose_clone") and params["train"]["max_length"] > facts.context:
            problems.append(f"params.yaml: train.max_length={params['train']['max_length']} exceeds the model's "
                            f"context of {facts.context:,}")
        rows.append(row)
    secs = [x["seconds"] for x in rows]
    peaks = [x["memory"]["peak"] for x in rows if x["memory"]]
    totals = {"seconds": None if None in secs else round(sum(secs), 1), "peak_memory": max(peaks) if peaks else None,
              "machine_memory": memory_limit}
    if device.gpu:
        per_gpu = [x["memory"]["per_gpu"] for x in rows if x["memory"]]
        totals |= {"peak_per_gpu": max(per_gpu) if per_gpu else None, "gpu_memory": gpu_limit}
    return {
        "stages": rows, "check": check, "parallel": parallel, "totals": totals,
        "device": {"kind": device.kind, "memory": device.memory, "source": device.source},
        "rates": None if r is None else {"source": where, "engine_start_s": r["start"].get("generate"),
                                          "train_start_s": r["start"].get("train"), "scale": round(scale, 4)},
        "model": None if facts is None else {"source": facts.source, "parameters": facts.parameters,
                                             "context": facts.context, "dtype": dtype},
        "notes": notes, "problems": problems,
    }


def save(root: str | Path, plan: dict) -> None:
    """Keep a plan that can run for `selfalign report` (a plan of nothing, or of settings that cannot run, would
    hide the last real one)."""
    if plan["stages"] and not plan["problems"]:
        write_json(Path(root) / SAVED, plan)


def planned_vs_actual(root: str | Path) -> list[dict]:
    """Per stage of the saved plan: its planned seconds and what the run's benchmark records measured."""
    path = Path(root) / SAVED
    if not path.exists():
        return []
    try:
        saved = json.loads(path.read_text())
    except ValueError:  # a plan half written by hand: the report goes on without it
        return []
    actual = {s["stage"]: s["seconds"] for s in timings.per_stage(timings.read_jobs(root))}
    rows = []
    for s in saved["stages"]:
        a, p = actual.get(s["stage"]), s["seconds"]
        rows.append({"stage": s["stage"], "planned_s": p, "actual_s": a,
                     "ratio": round(a / p, 2) if a and p else None})
    return rows


def read_types(root: Path) -> list[dict]:
    from selfalign.data.seeds import load_question_types

    return load_question_types(root / wk.TYPES)


def precision(params: dict, device: est.Device) -> tuple[str, bool, list[str]]:
    """(the inference dtype, whether training runs in bf16, the settings whose `auto` was taken as bf16 because
    the GPUs planned for are not here to ask)."""
    from selfalign.engine.models import inference_dtype, on_cuda

    infer, mixed = params["model"]["inference_dtype"], params["train"]["mixed_precision"]
    if not device.gpu:
        return inference_dtype(infer, "cpu"), est.trains_bf16(mixed, "cpu"), []
    if on_cuda():
        return inference_dtype(infer, "cuda"), est.trains_bf16(mixed, "cuda"), []
    assumed = [k for k, v in (("model.inference_dtype", infer), ("train.mixed_precision", mixed)) if v == "auto"]
    return ("bfloat16" if infer == "auto" else infer), mixed != "fp32", assumed


def _what_takes_it(memory: dict) -> str:
    """The largest parts of a training process's memory, to say what to shard, offload or checkpoint."""
    parts = memory.get("parts")
    if not parts:
        return ""
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
    return " (" + ", ".join(f"{k} {est.gb(v)}" for k, v in top) + ")"


def _memory(stage: str, w: wk.StageWork, facts, params: dict, dtype: str, bf16: bool, most: int, device: est.Device,
            problems: list[str], notes: list[str]) -> dict | None:
    if facts is None:
        return None
    g = params["generation"]
    if stage in ("engrave", "verbose_clone"):
        return est.training_memory(facts, params["train"], bf16=bf16, device=device)

    def generation(max_new: int) -> dict:
        tokens = most + max_new
        m = est.generation_memory(facts, g["backend"], seqs=w.concurrency, dtype=dtype, tokens_per_seq=tokens,
                                  device=device, tensor_parallel=g["tensor_parallel_size"],
                                  gpu_memory_utilization=g["gpu_memory_utilization"])
        if device.gpu and g["backend"] == "vllm":
            tp, share = g["tensor_parallel_size"], g["gpu_memory_utilization"]
            if m["weights_per_gpu"] > m["budget_per_gpu"]:
                problems.append(f"{stage}: the weights alone, {est.gb(m['weights_per_gpu'])} per GPU over "
                                f"generation.tensor_parallel_size={tp}, do not fit in "
                                f"generation.gpu_memory_utilization={share:g} of a {est.gb(device.memory)} GPU; "
                                "raise tensor_parallel_size (and gpus_per_shard)")
            elif m["seqs_that_fit"] == 0:
                problems.append(f"{stage}: the KV cache the weights leave ({est.gb(m['kv_allocated'])} per GPU) cannot "
                                f"hold one sequence of {tokens:,} tokens; raise generation.tensor_parallel_size or "
                                "gpu_memory_utilization")
            elif m["seqs_that_fit"] < w.concurrency:
                notes.append(f"{stage}: vLLM's KV cache holds {m['seqs_that_fit']} sequences of {tokens:,} tokens, "
                             f"fewer than generation.max_num_seqs={w.concurrency}: it decodes that many at once")
        elif m.get("seqs_that_fit") == 0:
            problems.append(f"{stage}: vLLM's KV cache ({est.gb(m['kv_allocated'])}, VLLM_CPU_KVCACHE_SPACE) cannot hold "
                            f"one sequence of {tokens:,} tokens; raise VLLM_CPU_KVCACHE_SPACE")
        return m

    if stage == "eval":
        gen = generation(w.max_new_tokens or 0)
        score = est.scoring_memory(facts, dtype, device=device, gpus=g["gpus_per_shard"])
        out = {"generation": gen, "scoring": score, "peak": max(gen["peak"], score["peak"])}
        if device.gpu:
            out["per_gpu"] = max(gen["per_gpu"], score["per_gpu"])
        return out
    if w.max_new_tokens:
        return generation(w.max_new_tokens)
    return None


def text(plan: dict) -> str:
    """The plan as a table, with its totals, where its rates come from, and anything that cannot run."""
    gpu = plan.get("device", {}).get("kind") == "gpu"
    memory = f"memory per GPU (of {est.gb(plan['device']['memory'])})" if gpu else "peak memory"
    lines = [f"| stage | items in → expected out | prompt tokens (shared) | new tokens at most | time | {memory} "
             "| last run |", "|---|---|---|---|---|---|---|"]
    for x in plan["stages"]:
        io = f"{_n(x['items_in'])} → {_n(x['expected_out'])}" + (" steps" if x["stage"] in ("engrave", "verbose_clone") else "")
        pt = x["prompt_tokens"]
        prompt = "-" if not pt else f"{pt['mean']:,} ({pt['shared']:,})"
        if x.get("scored_tokens"):
            prompt += f"; {x['scored_tokens']['candidates']:,} candidates × {x['scored_tokens']['mean']:,} scored"
        new = "-" if x["new_tokens_at_most"] is None else f"{x['new_tokens_at_most']:,}"
        mem = _memory_cell(x["memory"], gpu)
        m = x["measured"]
        last = "-" if not m else f"{timings.minutes(m['seconds'])}" + (
            f", {m['max_rss_mb'] / 1024:.1f} GB" if m.get("max_rss_mb") else "")
        lines.append(f"| `{x['stage']}` | {io} | {prompt} | {new} | {timings.minutes(x['seconds'])} | {mem} | {last} |")
    t = plan["totals"]
    lines.append(f"| all | | | | **{timings.minutes(t['seconds'])}** | "
                 f"{est.gb(t['peak_per_gpu'] if gpu else t['peak_memory'])} | |")
    out = ["\n".join(lines)] if plan["stages"] else ["Nothing to run: every stage is up to date."]
    if plan["check"]:
        out.append("`check` reruns too (seconds; its stamp does not change, so it makes nothing else rerun).")
    if plan["rates"]:
        r = plan["rates"]
        out.append(f"Rates from {r['source']}: engine start {r['engine_start_s']} s a generation job, training start "
                   f"{r['train_start_s']} s, each stage's seconds per unit (--json) from the same run"
                   + (f", scaled x{r['scale']}" if r["scale"] != 1 else "") + f"; {plan['parallel']} job(s) at once.")
    out += [f"Note: {n}" for n in plan["notes"]]
    out += [f"error: {p}" for p in plan["problems"]]
    return "\n\n".join(out)


def _memory_cell(memory: dict | None, gpu: bool) -> str:
    if not memory:
        return "-"
    if not gpu:
        return est.gb(memory["peak"])
    cell = est.gb(memory["per_gpu"])
    parts = [memory.get("generation"), memory.get("scoring")] if "scoring" in memory else [memory]
    gpus = max((p.get("gpus") or 1) for p in parts) if "processes" not in memory else memory["processes"]
    cell += f" × {gpus}"
    if memory.get("offloaded"):
        cell += f", {est.gb(memory['host_per_node'])} host a node"
    return cell


def _n(x) -> str:
    return "?" if x is None else f"{x:,}"
