"""Parsing model continuations of numbered lists ("1. ...\n2. ...")."""
from __future__ import annotations

import re
from dataclasses import dataclass

_ITEM = re.compile(r"^\s*(\d+)[.)]\s*(.*)$")


@dataclass(frozen=True)
class ListItem:
    number: int
    text: str
    complete: bool  # False for the last item of a generation cut off by max_new_tokens


def parse_numbered(continuation: str, *, first: int, finished: bool) -> list[ListItem]:
    """Items of a numbered list whose item `first` the prompt opened ("...\\n{first}.").

    The list ends at the first line that does not start the next number: a small model that breaks
    the numbering has left the list (a heading such as "New questions about X:", a new document),
    and the item before that line is complete.
    """
    lines = continuation.split("\n")
    items = [(first, lines[0])]
    ended = False
    for line in lines[1:]:
        m = _ITEM.match(line)
        if not (m and int(m.group(1)) == items[-1][0] + 1):
            ended = True
            break
        items.append((int(m.group(1)), m.group(2)))
    return [
        ListItem(num, " ".join(text.split()), complete=finished or ended or i < len(items) - 1)
        for i, (num, text) in enumerate(items)
    ]


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
