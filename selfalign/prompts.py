"""Prompt templates: Jinja2 files under templates/, declared as inputs of the rules that use them.

Templates are rendered with StrictUndefined so a misspelt field is an error, not an empty string.
Every generated record stores the hash of the template text that produced it.
"""
from __future__ import annotations

from pathlib import Path

import jinja2

from .io import InputError
from .records import sha256_text


class Template:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{self.path}: template not found") from None
        env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
        try:
            self._template = env.from_string(self.text)
        except jinja2.TemplateSyntaxError as e:
            raise InputError(f"{self.path}:{e.lineno}: template syntax error: {e.message}") from None
        self.hash = sha256_text(self.text)[:16]

    def render(self, **fields) -> str:
        try:
            return self._template.render(**fields)
        except jinja2.UndefinedError as e:
            raise InputError(f"{self.path}: {e.message}") from None
