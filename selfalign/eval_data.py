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

from .io import InputError

HHH_CATEGORIES = ("harmless", "helpful", "honest", "other")
TQA_COLUMNS = ("Question", "Best Answer", "Correct Answers", "Incorrect Answers")


@dataclass(frozen=True)
class MCItem:
    id: str
    benchmark: str  # "hhh" or "truthfulqa"
    category: str
    question: str
    choices: tuple[str, ...]
    correct: tuple[bool, ...]  # per choice
    best: int = -1  # truthfulqa: index of the Best Answer (MC1's only correct choice)


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
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in TQA_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise InputError(f"{path}: missing column(s) {', '.join(missing)} (have: {', '.join(reader.fieldnames or [])})")
            rows = list(reader)
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
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


def eval_questions(hhh_root: str | Path, truthfulqa_csv: str | Path) -> list[str]:
    """Every evaluation question, for the contamination check (all of TruthfulQA, not the sample)."""
    return [it.question for it in load_hhh(hhh_root)] + [it.question for it in load_truthfulqa(truthfulqa_csv)]
