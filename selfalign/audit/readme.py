"""The README's tables of results, generated from the committed run.

Each table sits between `<!-- selfalign readme: NAME -->` and `<!-- /selfalign readme: NAME -->`:
`selfalign readme` rewrites them from metrics/*.json, bench/pipeline_timings.json and bench/quality.json, and
`selfalign readme --check` (run by the tests) fails when the README and those files disagree.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from selfalign.audit import report, timings
from selfalign.core.files import InputError
from selfalign.data.paths import STAGES
from selfalign.eval.multiple_choice import HEADLINE
from selfalign.eval.quality import FIGURES_FILE

TIMINGS = "bench/pipeline_timings.json"


def _labels(task: str, title: str, *metrics: tuple[str, str]) -> dict[tuple[str, str], str]:
    """`title, metric` and its note per metric; the benchmark's headline (multiple_choice.HEADLINE) says so."""
    return {(task, metric): f"{title}, `{metric}`{' (headline)' if HEADLINE.get(task) == metric else note}"
            for metric, note in metrics}


EVAL_LABELS = {
    **_labels("hhh", "HHH overall", ("acc_norm", ""), ("acc", " (sum)"), ("acc_mean", " (per-token mean)")),
    **_labels("truthfulqa_mc", "TruthfulQA MC1, published format (BIG-bench)", ("mc1", ""), ("mc1_norm", ""),
              ("mc1_mean", "")),
    **_labels("truthfulqa", "TruthfulQA MC1, CSV-derived, dialogue format", ("mc1", ""), ("mc1_norm", ""), ("mc1_mean", "")),
    ("truthfulqa", "mc2"): "TruthfulQA MC2, CSV-derived",
    ("xstest", "refusal_rate_unsafe"): "XSTest refusal rate on unsafe prompts (should be high)",
    ("xstest", "answer_rate_safe"): "XSTest answer rate on safe prompts (1 - over-refusal)",
    ("fidelity", "agreement"): "Engraving fidelity: decisions agreeing with the principle-prompted teacher, all",
    ("fidelity/xstest", "agreement"): "Engraving fidelity, on XSTest's prompts",
    ("fidelity/heldout", "agreement"): "Engraving fidelity, on held-out generated queries",
}


def _removed(m: dict) -> str:
    parts = [f"{n} {k.removeprefix('removed.').replace('_', ' ')}" for k, n in sorted(m.items())
             if k.startswith("removed.") and n]
    return "; removed: " + ", ".join(parts) if parts else ""


def _origins(mix: dict | None) -> str:
    return f" ({mix['self_instruct']} self-instruct, {mix['red_team']} red-team)" if mix else ""


def _eval_outcome(m: dict) -> str:
    hhh, mc = m["base"].get("hhh", {}), m["base"].get("truthfulqa_mc", {})
    xs = m["base"].get("xstest", {})
    return (f"{hhh.get('n', 0)} HHH items, {mc.get('n', 0)} TruthfulQA MC1 questions, "
            f"{xs.get('n_safe', 0) + xs.get('n_unsafe', 0)} XSTest prompts; 3 checkpoints")


def _training_outcome(m: dict) -> str:
    return (f"{m['examples']} pairs, {m['processes']} process(es), {m['steps']} steps: loss "
            f"{m['first_loss']:.2f} → {m['last_loss']:.2f}")


# One line on what each stage made, from its metrics file.
OUTCOMES = {
    "topics": lambda m: f"{m['generations']} generations in {m.get('rounds', 1)} round(s) → **{m['kept']} topics** for "
                        f"{m.get('types_covered', '?')} of {m.get('types', '?')} types ({m['parsed']} parsed{_removed(m)})",
    "queries": lambda m: f"{m['generations']} generations → **{m['kept']} queries** ({m.get('kept.self_instruct', 0)} "
                         f"self-instruct, {m.get('kept.red_team', 0)} red-teaming) of {m['parsed']} parsed{_removed(m)}",
    "align": lambda m: f"{m.get('removed_eval_contamination', 0)} queries removed as matches of eval questions; "
                       f"of {m['generations']} answered{_origins(m.get('mix', {}).get('answered'))}, **{m['kept']} "
                       f"({m['kept_share']:.0%}) kept**{_origins(m.get('mix', {}).get('kept'))}{_removed(m)}",
    "verbose": lambda m: f"{m['generations']} long answers → **{m['kept']} kept** (mean {m['mean_answer_words']} "
                         f"words{_removed(m)})",
    "engrave": _training_outcome,
    "verbose_clone": _training_outcome,
    "eval": _eval_outcome,
}


def _outcome(stage: str, m: dict) -> str:
    if stage == "model":
        return "the base model (`model.name`) as a plain safetensors folder (no metrics)"
    return OUTCOMES[stage](m) if m and stage in OUTCOMES else "-"


def _markdown(header: list[str], rows: list[list]) -> str:
    """A Markdown table: the header, its rule, one line per row."""
    def line(cells):
        return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, rows)])


def stages_table(root: Path) -> str:
    snap = timings.read_snapshot(root / TIMINGS)
    seconds = {s["stage"]: s["seconds"] for s in snap["stages"]}
    rows = [[f"`{stage}`", timings.minutes(seconds[stage]) if stage in seconds else "-",
             _outcome(stage, report._metrics(root, stage))] for stage in STAGES if stage != "check"]
    rows.append(["all stages", f"**{timings.minutes(snap['total_seconds'])}**", ""])
    return _markdown(["stage", "time", "what came out"], rows)


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    ci = f" [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r["ci95"] else ""
    return f"{r['value']:.3f}{ci}"


def _diff(r: dict | None) -> str:
    if r is None or r["diff"] is None:
        return "-"
    p = f", p = {r['p']:.2f}" if r["p"] is not None else ""
    return f"{r['diff']:+.3f}{p}{' ≈' if r['within_noise'] else ''}"


def eval_table(root: Path) -> str:
    cells: dict[tuple[str, str], dict[str, dict]] = {}
    for r in report.eval_table(root):
        cells.setdefault((r["task"], r["metric"]), {})[r["checkpoint"]] = r
    rows = []
    for (task, metric), row in cells.items():
        label = EVAL_LABELS.get((task, metric), f"{task.replace('hhh/', 'HHH ')}, `{metric}`")
        e, f = row.get("engraved"), row.get("final")
        rows.append([label, next(iter(row.values()))["n"], _cell(row.get("base")), _cell(e), _diff(e), _cell(f), _diff(f)])
    return _markdown(["", "n", "base", "engraved", "engraved - base", "final", "final - base"], rows)


def _share(x) -> str:
    return "-" if x is None else f"{x:.0%}"


def mix_table(root: Path) -> str:
    return _markdown(["step", "self-instruct", "red-team", "red-team share", "refusals: self-instruct", "refusals: red-team"],
                     [[r["step"], r["self_instruct"], r["red_team"], _share(r["red_team_share"]),
                       _share(r["refusal_self_instruct"]), _share(r["refusal_red_team"])] for r in report.mix_table(root)])


def _of(x, n: int, d: int) -> str:
    return "n/a" if x is None else f"{x:.0%} ({n}/{d})"


def _quality(root: Path) -> dict:
    path = root / FIGURES_FILE
    if not path.exists():
        raise InputError(f"{path}: missing; write it with `python bench/quality.py --json {FIGURES_FILE}`")
    return json.loads(path.read_text())


def quality_lines(figures: dict) -> str:
    """Per stage, the labelled set's precision and recall; align before (format checks only) and after its filters."""
    return _markdown(["stage", "labelled", "good", "kept", "precision", "recall"],
                     [[r["stage"], r["labelled"], r["good"], r["kept"], _of(r["precision"], r["kept_good"], r["kept"]),
                       _of(r["recall"], r["kept_good"], r["good"])] for r in figures["stages"]])


def filter_lines(figures: dict) -> str:
    """Each align content filter alone: what it drops, the share of that which is bad, the share of the bad it drops."""
    return _markdown(["align filter", "default", "drops", "of them bad", "bad answers it drops"],
                     [[f"`{r['filter']}`", "on" if r["on"] else "off", r["dropped"],
                       _of(r["precision"], r["dropped_bad"], r["dropped"]), _share(r["recall"])]
                      for r in figures["align_filters"]])


TABLES = {"stages": stages_table, "eval": eval_table, "mix": mix_table,
          "quality": lambda root: quality_lines(_quality(root)), "filters": lambda root: filter_lines(_quality(root))}


def _block(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- selfalign readme: {name} -->\n)(.*?)(<!-- /selfalign readme: {name} -->)", re.S)


def render(text: str, root: str | Path) -> str:
    """`text` (a README) with every generated table rewritten from the run in `root`."""
    root = Path(root)
    for name, make in TABLES.items():
        pattern = _block(name)
        if not pattern.search(text):
            raise InputError(f"README: no '<!-- selfalign readme: {name} -->' block")
        table = make(root)
        text = pattern.sub(lambda m: m.group(1) + table + "\n" + m.group(3), text)
    return text


def update(readme: str | Path, root: str | Path, *, check: bool = False) -> bool:
    """Rewrite the README's tables (or, with `check`, only compare); True when it was already current."""
    readme = Path(readme)
    old = readme.read_text()
    new = render(old, root)
    if new != old and not check:
        readme.write_text(new)
    return new == old

