"""Does a training target carry the prompt's machinery? An answer that says "I will follow 3 (helpful)",
opens the next turn or repeats the verbose instruction teaches the trained model to say it too, with no
principles or instruction in its prompt to make sense of it.

`leak` names the first kind found (None: clean). The align and verbose stages drop such targets and count
them under `removed.leaks_prompt`, whatever earlier filters let through.
"""
from __future__ import annotations

import re

from selfalign.data.dialogue import THOUGHT, USER, assistant_turn
from selfalign.data.principles import CITATION, norm_name

INSTRUCTION_WORDS = 6  # an answer sharing a run of this many words with the verbose instruction repeats it
_FOLLOW = re.compile(r"\bI (?:will|should|shall) (?:follow|apply|use) (?:rules?|principles?|\d)", re.IGNORECASE)
_NUMBERED = re.compile(r"\b(?:principles?|rules?) (?:#|no\.? ?)?\d{1,2}\b", re.IGNORECASE)
_NAMED = re.compile(r"\(([^()\n]{1,40})\)")


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def leak(answer: str, *, assistant: str, principle_names: list[str], instruction: str | None = None) -> str | None:
    """The kind of prompt text in `answer`: thought_marker, follows_rules, principle_citation, principle_number,
    principle_name, next_turn or verbose_instruction; None when there is none."""
    low = answer.lower()
    if THOUGHT in low:
        return "thought_marker"
    if _FOLLOW.search(answer):
        return "follows_rules"
    names = {norm_name(p) for p in principle_names}
    if any(norm_name(n) in names for _, n in CITATION.findall(answer)):
        return "principle_citation"  # "3 (helpful)"
    if _NUMBERED.search(answer):
        return "principle_number"  # "as rule 7 says"
    if any(norm_name(m) in names for m in _NAMED.findall(answer)):
        return "principle_name"  # "(candor)": a principle's name, cited without its number
    if USER in answer or f"\n{assistant_turn(assistant)}" in answer or answer.lstrip().startswith(
            assistant_turn(assistant)):
        return "next_turn"
    if instruction and _ngrams(answer, INSTRUCTION_WORDS) & _ngrams(instruction, INSTRUCTION_WORDS):
        return "verbose_instruction"
    return None
