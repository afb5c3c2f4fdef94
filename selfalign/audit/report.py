"""`selfalign report`: one HTML page about a run's data, for a person to look at.

What it shows: the funnel (how many records each stage produced and each filter removed), length
distributions per stage, which principles the thoughts cited, duplicate rates, training loss and
the eval metrics per checkpoint with their intervals and paired tests. Beside it: great-expectations
data docs of every validated dataset (made to render offline, selfalign/audit/offline.py) and Snakemake's
own `--report` of the rules. Everything is read from the files a `dvc repro` leaves behind (data/,
metrics/, plots/); nothing is recomputed with a model.
"""
from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path

import jinja2

from selfalign.audit.lineage import git_revision
from selfalign.audit.offline import make_offline
from selfalign.core.files import InputError, atomic_open, read_jsonl, write_json
from selfalign.data.eval_sets import HHH_CATEGORIES
from selfalign.data.paths import CHECKPOINTS, GENERATION_STAGES, RECORD_FILES
from selfalign.data.principles import load_principles
from selfalign.eval.multiple_choice import HEADLINE
from selfalign.eval.quality import FIGURES_FILE
from selfalign.eval.stats import within_noise
from selfalign.text.filters import normalize
from selfalign.validation.docs import build_data_docs

# The kept records of each generation stage: (stage, dataset name in validation.expectations.DATASET_SPECS,
# file, the text field whose length is plotted).
KEPT_DATASETS = tuple((stage, name, RECORD_FILES[name], field) for stage, name, field in (
    ("topics", "topics", "topic"), ("queries", "queries", "query"), ("align", "aligned", "answer"),
    ("verbose", "verbose", "answer")))
REJECTED = {name: RECORD_FILES[name] for name in ("queries_rejected", "aligned_rejected", "verbose_rejected")}


def _metrics(root: Path, stage: str) -> dict:
    path = root / "metrics" / f"{stage}.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def _records(root: Path, rel: str) -> list[dict]:
    path = root / rel
    return read_jsonl(path, allow_empty=True) if path.exists() else []


def funnel(root: Path) -> list[dict]:
    """Record counts from the seeds to the two training sets, one row per step, in pipeline order."""
    rows: list[dict] = []

    def add(stage: str, step: str, count) -> None:
        if count is not None:
            rows.append({"stage": stage, "step": step, "count": int(count)})

    add("seeds", "self-instruct seed instructions", len(_records(root, RECORD_FILES["self_instruct"])) or None)
    add("seeds", "red-teaming question types", len(_records(root, RECORD_FILES["red_team_types"])) or None)
    for stage, noun in (("topics", "topics"), ("queries", "queries")):
        m = _metrics(root, stage)
        add(stage, "generations", m.get("generations"))
        add(stage, f"{noun} parsed", m.get("parsed"))
        add(stage, f"{noun} kept", m.get("kept"))
    m = _metrics(root, "align")
    add("align", "queries answered (sampled after the contamination check)", m.get("generations"))
    add("align", "answers kept (engraving set)", m.get("kept"))
    m = _metrics(root, "verbose")
    add("verbose", "verbose answers generated", m.get("generations"))
    add("verbose", "verbose answers kept (cloning set)", m.get("kept"))
    for stage in ("engrave", "verbose_clone"):
        add(stage, "training examples", _metrics(root, stage).get("examples"))
    return rows


def filters(root: Path) -> list[dict]:
    """What each filter removed, per stage (the `removed.*` counts of the stage metrics)."""
    rows = []
    for stage in GENERATION_STAGES:
        for key, value in _metrics(root, stage).items():
            if key.startswith("removed") and value:
                rows.append({"stage": stage, "filter": key.split(".", 1)[-1], "removed": int(value)})
    return rows


def kept_records(root: Path) -> dict[str, list[dict]]:
    """Each stage's kept output, read once for every figure that needs it."""
    return {stage: _records(root, rel) for stage, _, rel, _ in KEPT_DATASETS if (root / rel).exists()}


def lengths(kept: dict[str, list[dict]]) -> dict[str, list[int]]:
    """Words per record of each stage's kept output."""
    fields = {stage: field for stage, _, _, field in KEPT_DATASETS}
    return {stage: [len(str(r.get(fields[stage], "")).split()) for r in records] for stage, records in kept.items()}


def duplicates(root: Path, kept: dict[str, list[dict]]) -> list[dict]:
    """Per stage: near-duplicates the stage removed, and exact duplicates (normalized as the
    write-time duplicate check normalizes) left among the records it kept."""
    rows = []
    for stage, _, _, field in KEPT_DATASETS:
        records = kept.get(stage)
        if not records:
            continue
        m = _metrics(root, stage)
        counts = Counter(normalize(str(r.get(field, ""))) for r in records)
        dup = sum(c - 1 for c in counts.values())
        parsed = m.get("parsed") or m.get("generations")
        near = m.get("removed.near_duplicate")
        rows.append({"stage": stage, "kept": len(records), "exact_duplicates_kept": dup,
                     "exact_duplicate_rate": round(dup / len(records), 4),
                     "near_duplicates_removed": near,
                     "near_duplicate_rate": round(near / parsed, 4) if near is not None and parsed else None})
    return rows


def citations(root: Path, aligned: list[dict]) -> list[dict]:
    """How often the kept thoughts cited each principle (the engraving set)."""
    path = root / "principles/principles.yaml"
    names = {p.id: p.name for p in load_principles(path)} if path.exists() else {}
    counts = Counter(int(c) for r in aligned for c in r.get("cited") or [])
    return [{"principle": i, "name": names.get(i, "?"), "citations": counts[i]} for i in sorted(set(names) | set(counts))]


QUALITY_KEYS = ("citation_entropy_bits", "citations_as_an_exemplar_share", "citations_renumbered", "kept_share",
                "types_covered", "types_below_min", "mean_answer_words")


def quality(root: Path) -> dict:
    """Figures on what the kept records are like, not only how many: per stage, the metrics on citation
    diversity and coverage, the topics per question type, and the labelled set's precision and recall
    where `bench/quality.json` has them (`python bench/quality.py --json bench/quality.json`)."""
    per_stage = [{"stage": st, "figure": k, "value": _metrics(root, st)[k]}
                 for st in GENERATION_STAGES for k in QUALITY_KEYS if k in _metrics(root, st)]
    path = root / FIGURES_FILE
    labelled = json.loads(path.read_text()) if path.exists() else {}
    return {"per_stage": per_stage, "per_type": _metrics(root, "topics").get("per_type", {}),
            "labelled": labelled.get("stages", []), "filters": labelled.get("align_filters", [])}


def examples(root: Path, kept: dict[str, list[dict]], per_reason: int = 2) -> list[dict]:
    """A few kept and rejected records of each stage, rejected ones per reason: what the filters saw."""
    rows = []
    for stage, _, _, field in KEPT_DATASETS:
        for r in kept.get(stage, [])[:3]:
            rows.append({"stage": stage, "verdict": "kept", "input": r.get("query", ""), "text": str(r.get(field, ""))})
    for name, rel in REJECTED.items():
        stage = name.removesuffix("_rejected").replace("aligned", "align")
        seen: Counter = Counter()
        for r in _records(root, rel):
            reason = str(r.get("reason", "")).split("(")[0]
            if seen[reason] < per_reason:
                seen[reason] += 1
                text = r.get("answer") or r.get("output") or r.get("query") or ""
                rows.append({"stage": stage, "verdict": f"rejected: {reason}",
                             "input": r.get("query", "") if stage != "queries" else "", "text": str(text)[:400]})
    return rows


def loss_curves(root: Path) -> dict[str, list[tuple[int, float]]]:
    out = {}
    for stage in ("engrave", "verbose_clone"):
        path = root / "plots" / f"{stage}_loss.csv"
        if path.exists():
            with path.open() as f:
                out[stage] = [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]
    return out


# (task as metrics/eval.json nests it, metrics shown) in the report's order; eval.png draws the first metric
# of each task. Which metric is a benchmark's headline is multiple_choice.HEADLINE's (see `headline`).
EVAL_TASKS = (
    ("hhh", ("acc_norm", "acc", "acc_mean")),
    *((f"hhh/{c}", ("acc_norm", "acc")) for c in HHH_CATEGORIES),
    ("truthfulqa_mc", ("mc1", "mc1_norm", "mc1_mean")),
    ("truthfulqa", ("mc1", "mc1_norm", "mc1_mean", "mc2")),
    ("xstest", ("refusal_rate_unsafe", "answer_rate_safe")),
    # Engraving fidelity: refuse/answer decisions that agree with the principle-prompted teacher's.
    ("fidelity", ("agreement",)), ("fidelity/xstest", ("agreement",)), ("fidelity/heldout", ("agreement",)),
)


def headline(task: str) -> str | None:
    """The metric `task` is judged by (multiple_choice.HEADLINE; an HHH category by HHH's); None: no headline."""
    return HEADLINE.get(task.split("/")[0])


def _dig(d: dict, path: str) -> dict:
    for part in path.split("/"):
        d = d.get(part, {}) if isinstance(d, dict) else {}
    return d if isinstance(d, dict) else {}


def eval_table(root: Path) -> list[dict]:
    """One row per (task, metric, checkpoint): the value with its 95% interval and n, and for engraved and
    final the paired difference from base with its interval, p-value and whether it is within noise."""
    ev = _metrics(root, "eval")
    rows = []
    for task, metrics in EVAL_TASKS:
        for metric in metrics:
            for ckpt in CHECKPOINTS:
                block = _dig(ev.get(ckpt, {}), task)
                if block.get(metric) is None:
                    continue
                n = block.get("n")
                if task == "xstest":
                    n = block.get("n_unsafe" if metric == "refusal_rate_unsafe" else "n_safe")
                cmp = _dig(ev.get(ckpt, {}).get("vs_base", {}), task).get(metric) or {}
                lo, hi = block.get(f"{metric}_lo"), block.get(f"{metric}_hi")
                has_cmp = cmp.get("lo") is not None
                rows.append({"task": task, "metric": metric, "checkpoint": ckpt, "value": block[metric],
                             "ci95": [lo, hi] if lo is not None else None, "n": n, "diff": cmp.get("diff"),
                             "diff_ci95": [cmp["lo"], cmp["hi"]] if has_cmp else None, "p": cmp.get("p"),
                             "test": cmp.get("test"), "within_noise": within_noise(cmp) if has_cmp else None})
    return rows


def detector_table(root: Path) -> list[dict]:
    """The refusal detector against XSTest's human labels (metrics/eval.json refusal_detector)."""
    det = _metrics(root, "eval").get("refusal_detector") or {}
    return [{"set": name} | det[key] for key, name in (("all", "all 450 labelled completions"),
                                                        ("held_out", "held-out half (even ids)")) if key in det]


def mix_table(root: Path) -> list[dict]:
    """Per stage, the data by origin: self-instruct and red-team counts, the red-team share, and where the
    answers were classified, the refusal share of each origin (metrics/*.json)."""
    q, a, v = (_metrics(root, s) for s in ("queries", "align", "verbose"))
    rows = []

    def add(step: str, mix: dict | None, refusals: dict | None = None) -> None:
        if not mix:
            return
        refusals = refusals or {}
        rows.append({"step": step, "self_instruct": mix.get("self_instruct"), "red_team": mix.get("red_team"),
                     "red_team_share": mix.get("red_team_share"),
                     "refusal_self_instruct": (refusals.get("self_instruct") or {}).get("share"),
                     "refusal_red_team": (refusals.get("red_team") or {}).get("share")})

    if "kept.self_instruct" in q:
        n = q["kept.self_instruct"] + q["kept.red_team"]
        add("queries: kept", {"self_instruct": q["kept.self_instruct"], "red_team": q["kept.red_team"],
                              "red_team_share": round(q["kept.red_team"] / n, 4) if n else None})
    m, r = a.get("mix", {}), a.get("refusal_share", {})
    add("align: pool (decontaminated)", m.get("pool"))
    add("align: held out (fidelity eval)", m.get("heldout"))
    add("align: answered", m.get("answered"), r.get("answered"))
    add("align: kept = engrave's training set", m.get("kept"), r.get("kept"))
    add("verbose: kept = verbose_clone's training set", v.get("mix", {}).get("kept"), v.get("refusal_share", {}).get("kept"))
    return rows


def planned_vs_actual(root: Path) -> list[dict]:
    from selfalign.plan.plan import planned_vs_actual as compare

    return compare(root)


def collect(root: str | Path) -> dict:
    """Every figure of the report, as plain data (also written beside it as report.json)."""
    root = Path(root)
    if not (root / "metrics").is_dir():
        raise InputError(f"{root / 'metrics'}: not found; run `dvc repro` first (the report reads a finished run)")
    kept = kept_records(root)
    return {"root": str(root.resolve()), "git_revision": git_revision(root),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "funnel": funnel(root), "filters": filters(root), "lengths": lengths(kept),
            "duplicates": duplicates(root, kept), "citations": citations(root, kept.get("align", [])),
            "loss": loss_curves(root), "eval": eval_table(root), "refusal_detector": detector_table(root),
            "mix": mix_table(root), "quality": quality(root), "examples": examples(root, kept), "timing": planned_vs_actual(root)}


# ----------------------------------------------------------------------------------------------
# Plots (matplotlib, rendered to PNG files beside the page)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return buf.getvalue()


def plot_funnel(rows: list[dict]) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(8, 0.35 * len(rows) + 1))
    labels = [f"{r['stage']}: {r['step']}" for r in rows][::-1]
    counts = [r["count"] for r in rows][::-1]
    ax.barh(labels, counts, color="#4878a8")
    for y, c in enumerate(counts):
        ax.text(c, y, f" {c}", va="center", fontsize=8)
    ax.set_xlabel("records")
    ax.set_title("Funnel: seeds to training sets")
    return _png(fig)


def plot_filters(rows: list[dict]) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(8, 0.3 * len(rows) + 1))
    ax.barh([f"{r['stage']}: {r['filter']}" for r in rows][::-1], [r["removed"] for r in rows][::-1], color="#c0504d")
    ax.set_xlabel("records removed")
    ax.set_title("What each filter removed")
    return _png(fig)


def plot_lengths(lengths: dict[str, list[int]]) -> bytes:
    items = list(lengths.items())
    fig, axes = _pyplot().subplots(1, len(items), figsize=(3 * len(items), 2.8), squeeze=False)
    for ax, (stage, words) in zip(axes[0], items):
        ax.hist(words or [0], bins=20, color="#55a868")
        ax.set_title(f"{stage} (n={len(words)})", fontsize=9)
        ax.set_xlabel("words")
    return _png(fig)


def plot_citations(rows: list[dict]) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(8, 3.6))
    ax.bar([f"{r['principle']} {r['name']}" for r in rows], [r["citations"] for r in rows], color="#8172b2")
    ax.tick_params(axis="x", labelrotation=70, labelsize=7)
    ax.set_ylabel("citations")
    ax.set_title("Principles cited by the kept thoughts")
    return _png(fig)


def plot_loss(loss: dict[str, list[tuple[int, float]]]) -> bytes:
    fig, ax = _pyplot().subplots(figsize=(5, 3))
    for stage, points in loss.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=stage)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    return _png(fig)


def plot_eval(rows: list[dict]) -> bytes:
    """One metric of each task (the first of EVAL_TASKS) per checkpoint, with its 95% interval."""
    tasks = list(dict.fromkeys((r["task"], r["metric"]) for r in rows))
    ckpts = list(dict.fromkeys(r["checkpoint"] for r in rows))
    by = {(r["task"], r["metric"], r["checkpoint"]): r for r in rows}
    fig, ax = _pyplot().subplots(figsize=(9, 3.4))
    width = 0.8 / len(ckpts)
    for k, ckpt in enumerate(ckpts):
        xs, ys, err = [], [], [[], []]
        for i, (task, metric) in enumerate(tasks):
            r = by.get((task, metric, ckpt))
            if r is None:
                continue
            lo, hi = r["ci95"] or (r["value"], r["value"])
            xs.append(i + k * width)
            ys.append(r["value"])
            err[0].append(max(0.0, r["value"] - lo))
            err[1].append(max(0.0, hi - r["value"]))
        ax.bar(xs, ys, width, yerr=err, capsize=2, label=ckpt, error_kw={"elinewidth": 0.8})
    hhh = [i for i, (task, _) in enumerate(tasks) if task.startswith("hhh")]
    if hhh:  # two-way HHH: a coin toss scores 0.5
        ax.hlines(0.5, min(hhh) - 0.2, max(hhh) + 0.8, colors="#d62728", linestyles="dashed", label="chance (HHH)")
    ax.set_xticks([i + width * (len(ckpts) - 1) / 2 for i in range(len(tasks))],
                  [f"{t}\n{m}" for t, m in tasks], rotation=30, fontsize=7, ha="right")
    ax.set_ylabel("value (95% interval)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=4)
    return _png(fig)


def _plots(stats: dict) -> dict[str, bytes]:
    """Every plot that has data: {file name: PNG bytes}."""
    first = [r for r in stats["eval"] if r["metric"] == dict(EVAL_TASKS)[r["task"]][0]]
    plots = {"funnel.png": (plot_funnel, stats["funnel"]), "filters.png": (plot_filters, stats["filters"]),
             "lengths.png": (plot_lengths, stats["lengths"]), "citations.png": (plot_citations, stats["citations"]),
             "loss.png": (plot_loss, stats["loss"]), "eval.png": (plot_eval, first)}
    return {name: draw(data) for name, (draw, data) in plots.items() if data}


def _page() -> jinja2.Template:
    """The page's template, report.html.j2 beside this module (package data: a wheel installs it too)."""
    text = resources.files(__package__).joinpath("report.html.j2").read_text(encoding="utf-8")
    return jinja2.Template(text, autoescape=True)


def _eval_pivot(rows: list[dict]) -> dict:
    """The eval rows as one table row per (task, metric) with a cell per checkpoint."""
    pivot: dict[tuple[str, str], dict[str, dict]] = {}
    for r in rows:
        pivot.setdefault((r["task"], r["metric"]), {})[r["checkpoint"]] = r
    ckpts = [c for c in CHECKPOINTS if any(c in cells for cells in pivot.values())]
    headlines = {(task, headline(task)) for task, _ in EVAL_TASKS}
    return {"pivot": list(pivot.items()), "ckpts": ckpts, "headlines": headlines}


def snakemake_report(root: Path, path: Path) -> None:
    """Snakemake's HTML report of the rules (runtimes, the rule graph), from its own run metadata."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "1", "--report", str(path.resolve())]
    p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if p.returncode != 0:
        raise InputError(f"`snakemake --report` failed in {root}:\n{(p.stdout + p.stderr)[-2000:]}")


def build(root: str | Path = ".", out: str | Path = "report", *, rules: bool = True) -> Path:
    """Write `out`/index.html (with its PNGs, report.json, the data docs and the rules report); returns its path."""
    root, out = Path(root), Path(out)
    stats = collect(root)
    out.mkdir(parents=True, exist_ok=True)
    plots = _plots(stats)
    for name, data in plots.items():
        with atomic_open(out / name, "wb") as f:
            f.write(data)
    write_json(out / "report.json", stats)
    datasets = {name: root / rel for _, name, rel, _ in KEPT_DATASETS} | {n: root / r for n, r in REJECTED.items()}
    docs = build_data_docs({n: p for n, p in datasets.items() if p.exists()}, out / "data_docs")
    make_offline(docs.parent)  # local copies of the docs' CDN styles and scripts: they render offline
    if rules:
        snakemake_report(root, out / "rules.html")
    page = out / "index.html"
    with atomic_open(page) as f:
        f.write(_page().render(s=stats, plots=plots, data_docs=docs.relative_to(out.resolve()).as_posix(),
                            rules="rules.html" if rules else None, **_eval_pivot(stats["eval"])))
    return page

