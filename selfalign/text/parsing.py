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
