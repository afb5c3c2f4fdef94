"""Prompt templates: Jinja2 files under templates/, declared as inputs of the rules that use them.

Templates are rendered in Jinja's sandbox (no attribute tricks that reach Python internals, no
changing the data they are given) with StrictUndefined, so a misspelt field is an error, not an
empty string. A template is self-contained: {% include %}, {% import %} and {% extends %} are
refused (another file would be an input no rule declares). Every error names the file and line.
Every generated record stores the hash of the template that produced it (`Template.hash`).

Every template gets the dialogue format's pieces (selfalign/data/dialogue.py's template_vars():
`prompt_text`, `user_turn`, `assistant_turn`, `thought_turn`, `turn_sep`), so no template spells
"User:" itself. The hash of a template that uses any of them covers the format too
(dialogue.format_signature()): a change of the format changes the `template_hash` of the records it
shapes, though no template file changed. A template that uses none (topics, queries) is hashed by its
text alone, as before.
"""
from __future__ import annotations

from pathlib import Path

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from selfalign.core.files import InputError
from selfalign.core.hashing import sha256_text
from selfalign.data import dialogue

_OTHER_FILES = {nodes.Include: "include", nodes.Import: "import", nodes.FromImport: "from ... import",
                nodes.Extends: "extends"}
_FILENAME = "<selfalign template>"


def _template_line(e: BaseException) -> int | None:
    """The template line an error was raised on: Jinja maps its frames back to template lines."""
    line = getattr(e, "lineno", None)
    tb = e.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


class Template:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{self.path}: template not found") from None
        except UnicodeDecodeError as e:
            raise InputError(f"{self.path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=False)
        env.globals.update(dialogue.template_vars())
        try:
            tree = env.parse(self.text)
            names = {n.name for n in tree.find_all(nodes.Name)}  # before compiling, which rewrites the tree
            for node in tree.find_all(tuple(_OTHER_FILES)):
                raise InputError(f"{self.path}:{node.lineno}: {{% {_OTHER_FILES[type(node)]} %}} is not allowed: a "
                                 "template must be self-contained (a file it pulled in would be an input no rule declares)")
            self._template = env.template_class.from_code(env, env.compile(tree, filename=_FILENAME), env.make_globals(None))
        except jinja2.TemplateSyntaxError as e:
            raise InputError(f"{self.path}:{e.lineno}: template syntax error: {e.message}") from None
        self.uses_dialogue = bool(names & dialogue.template_vars().keys())
        self.hash = sha256_text(self.text + "\n" + dialogue.format_signature() if self.uses_dialogue else self.text)[:16]

    def render(self, **fields) -> str:
        try:
            return self._template.render(**fields)
        except Exception as e:  # noqa: BLE001 - whatever a template expression raises is an error in that template
            line = _template_line(e)
            at = f"{self.path}:{line}" if line else str(self.path)
            if isinstance(e, jinja2.UndefinedError):
                raise InputError(f"{at}: {e.message}") from None
            if isinstance(e, jinja2.exceptions.SecurityError):
                raise InputError(f"{at}: not allowed in a template: {e}") from None
            raise InputError(f"{at}: template error: {type(e).__name__}: {e}") from None
