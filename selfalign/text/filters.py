"""Checks on generated text that several stages apply: degenerate output, a restarted dialogue, a line
repeated in a loop, and the normalisation the duplicate checks compare by."""
from __future__ import annotations

import re
from collections import Counter

# A line that opens another turn: the model went on to write the next exchange instead of ending.
NEW_TURN = re.compile(r"^\s*(User|Human|Question|Q)\s*:", re.MULTILINE)
REPEAT_LINES = 3  # the same line this many times is a repetition loop, not an answer


def normalize(text: str) -> str:
    """Lowercase, whitespace collapsed: what "the same text" means to the duplicate checks."""
    return " ".join(text.lower().split())


def restarts_dialogue(text: str, assistant: str) -> bool:
    return bool(NEW_TURN.search(text)) or f"\n{assistant}:" in text


def repeats_lines(text: str) -> bool:
    """A line of 3+ words said REPEAT_LINES times or more."""
    lines = Counter(normalize(line) for line in text.splitlines() if len(line.split()) >= 3)
    return bool(lines) and max(lines.values()) >= REPEAT_LINES


# Control characters (other than newline and tab), the replacement character a bad decode leaves,
# and bidirectional overrides that hide what text says.
_BAD_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd\u202a-\u202e\u2066-\u2069]")
_TOKENS = re.compile(r"[^\W_]+")  # runs of letters or digits
_WORDS = re.compile(r"[^\W\d_]+")  # runs of letters
MAX_WORD = 45  # letters; longer than any English word, so a run like "AAAA..." is degenerate output
MIN_DISTINCT = 0.2  # distinct tokens / tokens, over texts of 8+ tokens: below it, the same few repeat


def is_garbage(text: str) -> bool:
    """Text no person writes, which degenerate sampling produces: control or replacement characters,
    neither letters nor digits, an impossibly long Latin-script word, or the same few tokens over
    and over."""
    if _BAD_CHARS.search(text):
        return True
    low = text.lower()
    tokens = _TOKENS.findall(low)
    if not tokens:
        return True
    if any(len(w) > MAX_WORD for w in re.findall(r"[a-z]+", low)):
        return True
    # Tokens, then words alone: a numbered list of one question ("1. Why? 2. Why? ...") repeats its words only.
    return any(len(ts) >= 8 and len(set(ts)) / len(ts) < MIN_DISTINCT for ts in (tokens, _WORDS.findall(low)))
