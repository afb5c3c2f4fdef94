"""The building blocks of the schemas: field patterns, element predicates and pandera check helpers.

Predicates return False for a value of the wrong type, never raise: a record's values come straight
from JSON, so any field may hold anything.
"""
from __future__ import annotations

import math
import re
import unicodedata
from typing import Any, Callable

import pandas as pd
import pandera.pandas as pa

ID_PATTERN = r"^[a-z]+-[0-9a-f]{16}$"
HASH_PATTERN = r"^[0-9a-f]{16}$"
TYPE_ID_PATTERN = r"^rt-[0-9]{2}$"
SOURCES = ("red_team", "self_instruct")
TERMINAL_CHARS = ".?!\"'\u201d\u2019"  # a query ending otherwise (or ending in "...") looks cut off
OPENING_PUNCTUATION = "\"'([\u201c\u2018\u00ab\u00bf\u00a1"  # punctuation a query may start with


def _matches(pattern: str) -> Callable[[Any], bool]:
    rx = re.compile(pattern)
    return lambda x: isinstance(x, str) and rx.fullmatch(x) is not None


def is_text(x: Any) -> bool:
    return isinstance(x, str) and x.strip() != ""


def is_null(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def n_words(x: Any) -> int:
    return len(x.split()) if isinstance(x, str) else 0


def starts_with_punctuation(x: str) -> bool:
    s = x.lstrip()
    return bool(s) and unicodedata.category(s[0]).startswith("P") and s[0] not in OPENING_PUNCTUATION


def hashable(x: Any) -> Any:
    return x if isinstance(x, (str, int, float, bool, type(None))) else repr(x)


def looks_truncated(x: str) -> bool:
    s = x.rstrip()
    return not s or s[-1] not in TERMINAL_CHARS or s.endswith("...")


is_id, is_hash, is_type_id = _matches(ID_PATTERN), _matches(HASH_PATTERN), _matches(TYPE_ID_PATTERN)

# Check names travel as the function's __name__: pandera 0.35 pops a `name=` argument the first time
# a model's schema is built, so a check inherited by a second model (or a rebuilt schema) would lose it.


def check(fields: str | tuple[str, ...], name: str, **kwargs):
    """pa.check(*fields, **kwargs) reported under `name`."""
    def decorate(fn):
        fn.__name__ = name
        return pa.check(*((fields,) if isinstance(fields, str) else fields), **kwargs)(fn)
    return decorate


def text_fields(*fields: str, name: str = "str, non-empty after strip"):
    """Each of `fields` holds a str with more than white space in it."""
    return check(fields, name, element_wise=True)(lambda cls, x: is_text(x))


def str_fields(*fields: str):
    """Each of `fields` holds a str, maybe empty (a rejected record keeps what the model wrote)."""
    return check(fields, "str (may be empty)", element_wise=True)(lambda cls, x: isinstance(x, str))


# Dataframe-level checks report whole rows; these are the fields shown for their offending rows.
FRAME_CHECK_FIELDS: dict[str, tuple[str, ...]] = {}


def frame_check(name: str, *fields: str):
    FRAME_CHECK_FIELDS[name] = fields

    def decorate(fn):
        fn.__name__ = name
        return pa.dataframe_check(fn)
    return decorate


def rowwise(df: pd.DataFrame, fields: tuple[str, ...], ok: Callable[..., bool]) -> pd.Series:
    """Apply ok(*values) per row; rows are not judged (True) when a field is absent."""
    if any(f not in df.columns for f in fields):
        return pd.Series(True, index=df.index)
    return pd.Series([bool(ok(*vals)) for vals in zip(*(df[f] for f in fields))], index=df.index, dtype=bool)
