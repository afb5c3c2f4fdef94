"""The held-out evaluation data under data/eval/: loaders with errors that name the file, and every
evaluation question for the contamination check. No model code: the `align` stage imports this to
keep eval questions out of training data without depending on the scorer.
"""
from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from selfalign.core.files import InputError

HHH_CATEGORIES = ("harmless", "helpful", "honest", "other")
TQA_COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


XSTEST_COLUMNS = ("id", "prompt", "type", "label")
XSTEST_LABELS = ("safe", "unsafe")
# Human labels of the gold completions (XSTest's three classes); partial refusals count as refusals.
GOLD_LABELS = {"1_full_compliance": False, "2_full_refusal": True, "3_partial_refusal": True}


@dataclass(frozen=True)
class MCItem:
    id: str
    benchmark: str  # "hhh", "truthfulqa" (MC sets derived from the CSV) or "truthfulqa_mc" (BIG-bench MC1)
    category: str
    question: str
    choices: tuple[str, ...]
    correct: tuple[bool, ...]  # per choice
    best: int = -1  # truthfulqa: index of the Best Answer (MC1's only correct choice)
    context: str | None = None  # the scoring context when the benchmark has its own format (else the dialogue)


@dataclass(frozen=True)
class XSPrompt:
    """One XSTest prompt: `label` is "safe" (should be answered) or "unsafe" (should be declined)."""

    id: str
    prompt: str
    type: str
    label: str


def load_hhh(root: str | Path, *, per_category: int | None = None, seed: int = 0) -> list[MCItem]:
    """HHH items; `per_category` keeps a seeded sample of that many per category (None: all 221)."""
    items = []
    for cat in HHH_CATEGORIES:
        path = Path(root) / cat / "task.json"
        try:
            task = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InputError(f"{path}: HHH category file not found") from None
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None
        examples = task.get("examples")
        if not isinstance(examples, list) or not examples:
            raise InputError(f"{path}: no 'examples' list")
        keep = set(range(len(examples)))
        if per_category is not None and per_category < len(examples):
            keep = set(random.Random(f"{seed}/{cat}").sample(range(len(examples)), per_category))
        for k, ex in enumerate(examples):
            if k not in keep:
                continue
            scores = ex.get("target_scores") if isinstance(ex, dict) else None
            if not isinstance(ex, dict) or not isinstance(ex.get("input"), str) or not isinstance(scores, dict) \
                    or len(scores) < 2 or sum(v == 1 for v in scores.values()) != 1:
                raise InputError(f"{path}: examples[{k}] needs 'input' text and 'target_scores' with one choice scored 1")
            choices = tuple(scores)
            items.append(MCItem(f"hhh/{cat}/{k}", "hhh", cat, ex["input"].strip(), choices,
                              tuple(scores[c] == 1 for c in choices)))
    return items


def _split(answers: str) -> list[str]:
    return [a.strip() for a in answers.split(";") if a.strip()]


def load_truthfulqa(path: str | Path, *, max_questions: int | None = None, seed: int = 0) -> list[MCItem]:
    """MC items from the generation-format CSV: choices = Correct Answers (with Best) + Incorrect Answers."""
    path = Path(path)
    rows = _read_csv(path, TQA_COLUMNS)
    items = []
    for line, r in enumerate(rows, start=2):
        best = (r["Best Answer"] or "").strip()
        correct = _split(r["Correct Answers"] or "")
        incorrect = _split(r["Incorrect Answers"] or "")
        if not (r["Question"] or "").strip() or not best or not incorrect:
            raise InputError(f"{path}:{line}: needs Question, Best Answer and Incorrect Answers")
        if best not in correct:
            correct = [best] + correct
        choices = tuple(correct + [a for a in incorrect if a not in correct])
        items.append(MCItem(f"truthfulqa/{line - 2}", "truthfulqa", r.get("Category") or "", r["Question"].strip(),
                          choices, tuple(c in correct for c in choices), best=choices.index(best)))
    if max_questions is not None and len(items) > max_questions:
        keep = sorted(random.Random(seed).sample(range(len(items)), max_questions))
        items = [items[i] for i in keep]
    return items


def _load_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None


def qa_context(primer: str, question: str) -> str:
    """The published TruthfulQA MC format (lm-evaluation-harness's truthfulqa_mc1, BIG-bench's truthful_qa):
    the 6-example "Q:/A:" primer, a blank line, then "Q: <question>\nA:"; each choice is scored as " <choice>"."""
    return f"{primer.rstrip()}\n\nQ: {question}\nA:"


def load_truthfulqa_mc(path: str | Path, *, max_questions: int | None = None, seed: int = 0) -> list[MCItem]:
    """BIG-bench's truthful_qa task (task_mc.json): 299 questions with TruthfulQA's MC1 choice sets (one
    choice scored 1), each in the published format with the task's primer (`task_prefix`) as context."""
    path = Path(path)
    task = _load_json(path, "BIG-bench truthful_qa task file")
    primer = task.get("task_prefix") if isinstance(task, dict) else None
    examples = task.get("examples") if isinstance(task, dict) else None
    if not isinstance(primer, str) or not primer.strip():
        raise InputError(f"{path}: no 'task_prefix' (the Q:/A: primer)")
    if not isinstance(examples, list) or not examples:
        raise InputError(f"{path}: no 'examples' list")
    items = []
    for k, ex in enumerate(examples):
        scores = ex.get("target_scores") if isinstance(ex, dict) else None
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str) or not ex["input"].strip() \
                or not isinstance(scores, dict) or len(scores) < 2 or sum(v == 1 for v in scores.values()) != 1:
            raise InputError(f"{path}: examples[{k}] needs 'input' text and 'target_scores' with one choice scored 1")
        choices = tuple(scores)
        correct = tuple(scores[c] == 1 for c in choices)
        question = ex["input"].strip()
        items.append(MCItem(f"truthfulqa_mc/{k}", "truthfulqa_mc", "", question, choices, correct,
                            best=correct.index(True), context=qa_context(primer, question)))
    if max_questions is not None and len(items) > max_questions:
        keep = sorted(random.Random(f"{seed}/truthfulqa_mc").sample(range(len(items)), max_questions))
        items = [items[i] for i in keep]
    return items


def _read_csv(path: Path, columns: tuple[str, ...]) -> list[dict]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(reader.fieldnames or [])})")
            return list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_xstest(path: str | Path, *, max_prompts: int | None = None, seed: int = 0) -> list[XSPrompt]:
    """XSTest's prompts (xstest_prompts.csv: 250 safe, 200 unsafe). `max_prompts` keeps a seeded sample that
    holds the safe/unsafe shares of the whole set (None: all 450), in file order."""
    path = Path(path)
    prompts = []
    seen = set()
    for line, r in enumerate(_read_csv(path, XSTEST_COLUMNS), start=2):
        pid, text, label = (r["id"] or "").strip(), (r["prompt"] or "").strip(), (r["label"] or "").strip()
        if not pid or not text or label not in XSTEST_LABELS:
            raise InputError(f"{path}:{line}: needs an id, a prompt and a label in {list(XSTEST_LABELS)}")
        if pid in seen:
            raise InputError(f"{path}:{line}: duplicate id {pid!r}")
        seen.add(pid)
        prompts.append(XSPrompt(pid, text, (r["type"] or "").strip(), label))
    if max_prompts is not None and len(prompts) > max_prompts:
        keep: set[int] = set()
        for label in XSTEST_LABELS:
            idx = [i for i, p in enumerate(prompts) if p.label == label]
            n = round(max_prompts * len(idx) / len(prompts))
            keep |= set(random.Random(f"{seed}/xstest/{label}").sample(idx, min(n, len(idx))))
        prompts = [p for i, p in enumerate(prompts) if i in keep]
    return prompts


def load_xstest_gold(path: str | Path) -> list[dict]:
    """XSTest's human-labelled completions (another model's answers): id, type, prompt, completion,
    final_label, and `refusal` (full or partial refusal) for measuring a refusal detector."""
    path = Path(path)
    rows = []
    for line, r in enumerate(_read_csv(path, ("id", "prompt", "completion", "final_label")), start=2):
        label = (r["final_label"] or "").strip()
        if label not in GOLD_LABELS:
            raise InputError(f"{path}:{line}: final_label {label!r} is not one of {list(GOLD_LABELS)}")
        rows.append({"id": r["id"], "type": r.get("type") or "", "prompt": r["prompt"], "completion": r["completion"] or "",
                     "final_label": label, "refusal": GOLD_LABELS[label]})
    return rows


def eval_questions(hhh_root: str | Path, truthfulqa_csv: str | Path, *, truthfulqa_mc: str | Path | None = None,
                   xstest: str | Path | None = None) -> list[str]:
    """Every evaluation question, for the contamination check (whole sets, never the samples): HHH,
    TruthfulQA, and where given BIG-bench's TruthfulQA MC questions and XSTest's prompts."""
    questions = [it.question for it in load_hhh(hhh_root)] + [it.question for it in load_truthfulqa(truthfulqa_csv)]
    if truthfulqa_mc is not None:
        questions += [it.question for it in load_truthfulqa_mc(truthfulqa_mc)]
    if xstest is not None:
        questions += [p.prompt for p in load_xstest(xstest)]
    return questions
