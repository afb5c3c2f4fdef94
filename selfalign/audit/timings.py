"""Run times and peak memory of a pipeline run, from Snakemake's benchmark records.

Every rule declares `benchmark: "benchmarks/<stage>/<job>.tsv"`: Snakemake writes the job's wall time
and peak memory there in its standard format. Timings differ from run to run, so they are kept out
of DVC's outputs and out of git; `selfalign timings --write FILE` snapshots them into a file that
can be committed (the README's time figures quote bench/pipeline_timings.json).
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from selfalign.core.files import InputError, write_json

# The DVC stages in pipeline order, for tables that read top to bottom.
from selfalign.data.paths import STAGES

BENCHMARKS = "benchmarks"


def read_jobs(root: str | Path = ".") -> list[dict]:
    """One row per job: stage, job (e.g. "000" for a shard, "collect"), seconds, max_rss_mb."""
    folder = Path(root) / BENCHMARKS
    rows = []
    for path in sorted(folder.rglob("*.tsv")):
        rel = path.relative_to(folder).with_suffix("")
        stage, job = (rel.parts[0], "/".join(rel.parts[1:])) if len(rel.parts) > 1 else (rel.parts[0], rel.parts[0])
        with open(path, newline="") as f:
            records = list(csv.DictReader(f, delimiter="\t"))
        if not records:
            continue
        last = records[-1]  # Snakemake appends nothing: one run per file; a repeat overwrites it
        try:
            rss = last.get("max_rss", "NA")
            rows.append({"stage": stage, "job": job, "seconds": round(float(last["s"]), 1),
                         "max_rss_mb": None if rss in ("NA", "-") else round(float(rss), 1)})
        except (KeyError, ValueError) as e:
            raise InputError(f"{path}: not a Snakemake benchmark record ({e})") from None
    return rows


def per_stage(jobs: list[dict]) -> list[dict]:
    """Per DVC stage: the sum of its jobs' wall times (they run one after another) and the peak memory."""
    out = []
    for stage in sorted({j["stage"] for j in jobs}, key=lambda s: (STAGES.index(s) if s in STAGES else 99, s)):
        mine = [j for j in jobs if j["stage"] == stage]
        rss = [j["max_rss_mb"] for j in mine if j["max_rss_mb"] is not None]
        out.append({"stage": stage, "jobs": len(mine), "seconds": round(sum(j["seconds"] for j in mine), 1),
                    "max_rss_mb": max(rss) if rss else None})
    return out


def snapshot(root: str | Path = ".") -> dict:
    jobs = read_jobs(root)
    if not jobs:
        raise InputError(f"{Path(root) / BENCHMARKS}: no benchmark records (run `dvc repro` first)")
    stages = per_stage(jobs)
    return {"stages": stages, "total_seconds": round(sum(s["seconds"] for s in stages), 1), "jobs": jobs}


def run_work(root: str | Path) -> dict:
    """What the run did, in the units `selfalign plan` measures rates in, and what it ran on (the params that
    decide a rate, the model's parameter count, the CPU class), so the snapshot can serve as another folder's
    `--rates`. Empty where the folder has no params.yaml."""
    from selfalign.core.config import load_params
    from selfalign.plan import estimate, plan

    root = Path(root)
    if not (root / "params.yaml").exists():
        return {}
    params = load_params(root / "params.yaml")
    work, last = plan.measured_work(root, params)
    facts, _ = estimate.model_facts(root, last)
    model = {"parameters": facts.parameters, "model": asdict(facts)} if facts else {}
    return {"work": plan.work_json(work), "setup": plan.setup(last) | model | {"cpu": estimate.cpu_class()}}


def write_snapshot(root: str | Path, out: str | Path) -> dict:
    snap = snapshot(root) | run_work(root)
    write_json(out, snap)
    return snap


def minutes(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 60}:{s % 60:02d}"


def markdown(snap: dict) -> str:
    lines = ["| stage | jobs | wall time | peak memory |", "|---|---|---|---|"]
    for s in snap["stages"]:
        rss = f"{s['max_rss_mb'] / 1024:.1f} GB" if s["max_rss_mb"] else "-"
        lines.append(f"| `{s['stage']}` | {s['jobs']} | {minutes(s['seconds'])} | {rss} |")
    lines.append(f"| all stages | {sum(s['jobs'] for s in snap['stages'])} | **{minutes(snap['total_seconds'])}** | |")
    return "\n".join(lines)


def read_snapshot(path: str | Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no timings snapshot (write one with `selfalign timings --write {path}`)") from None
    except ValueError as e:
        raise InputError(f"{path}: not JSON ({e})") from None
