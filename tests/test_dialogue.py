"""The dialogue format has one definition (selfalign/data/dialogue.py): prompts, templates and stop strings agree.

Context distillation (verbose cloning) needs the student's prompt, prompt_text (what training and
evaluation use), to be the teacher's prompt (templates/verbose.j2) minus the instruction; the align
prompt's last turn is that dialogue with the thought marker; the stop strings stop where the format
starts the next user turn.
"""
import ast

import pytest

from selfalign.core.config import load_params
from selfalign.core.hashing import sha256_text
from selfalign.data import dialogue, principles
from selfalign.data.dialogue import NEXT_USER_TURN, TURN_SEP, USER, assistant_turn, prompt_text, thought_turn, user_turn
from selfalign.data.templates import Template
from selfalign.eval import xstest
from selfalign.stages import align, relevance, verbose

from conftest import ROOT

PARAMS = load_params(ROOT / "params.yaml")
ASSISTANT = PARAMS["align"]["assistant_name"]
# Plain, with a trailing space, with a trailing newline, padded both sides, with a line break inside.
QUERIES = ["Why is the sea salty?", "How do I bake bread? ", "List three prime numbers.\n",
           "  Tell me a joke.  \n\n", "What is 2+2?\nAnswer briefly."]


def _verbose_prompts(instruction: str, queries=QUERIES, template=ROOT / "templates/verbose.j2") -> list[str]:
    aligned = [{"id": f"a-{i:016x}", "query": q} for i, q in enumerate(queries)]
    items = verbose.build_items(aligned, Template(template), assistant=ASSISTANT, instruction=instruction)
    return [it.prompt for it in sorted(items, key=lambda it: it.key)]


def _align_prompt(query: str, template=ROOT / "templates/align.j2") -> str:
    active, exemplars, _ = principles.load_alignment_text(ROOT / "principles/principles.yaml",
                                                          ROOT / "principles/exemplars.yaml")
    return align.render_context(Template(template), assistant=ASSISTANT, identity=PARAMS["align"]["identity"],
                                principles=active, exemplars=exemplars, query=query)


def test_the_format_pieces_make_prompt_text():
    assert prompt_text(" Why? \n", "Sage") == "User: Why?\n\nSage:"  # the format, pinned
    assert prompt_text(" Why? \n", "Sage") == user_turn("Why?") + TURN_SEP + assistant_turn("Sage")
    assert thought_turn("Sage") == "Sage (internal thought):" and NEXT_USER_TURN == "\n" + USER


# (a) The teacher's prompt minus the instruction is the student's.

def test_verbose_prompt_without_instruction_is_prompt_text():
    assert _verbose_prompts("") == [prompt_text(q, ASSISTANT) for q in QUERIES]


def test_verbose_prompt_is_the_instruction_then_prompt_text():
    instruction = PARAMS["verbose"]["instruction"]
    shown = " ".join(instruction.replace("{assistant}", ASSISTANT).split())  # as build_items normalises it
    for query, prompt in zip(QUERIES, _verbose_prompts(instruction)):
        assert prompt.startswith(shown + TURN_SEP)
        assert prompt.removeprefix(shown + TURN_SEP) == prompt_text(query, ASSISTANT)


def test_a_verbose_template_that_spells_the_turn_itself_fails(tmp_path):
    """The check above can fail: the template before the one definition (the query unstripped, and a blank
    line before the dialogue when the instruction is empty)."""
    old = tmp_path / "verbose.j2"
    old.write_text("{{ instruction }}\n\nUser: {{ query }}\n\n{{ assistant }}:\n")
    assert _verbose_prompts("", template=old) != [prompt_text(q, ASSISTANT) for q in QUERIES]
    assert _verbose_prompts("x", QUERIES[:1], template=old) == ["x" + TURN_SEP + prompt_text(QUERIES[0], ASSISTANT)]


# (b) The align prompt ends with the same dialogue: the user's turn, then the assistant's (thought) turn.

@pytest.mark.parametrize("query", QUERIES)
def test_align_prompt_ends_with_the_dialogue_of_the_query(query):
    prompt = _align_prompt(query)
    assert prompt.endswith(TURN_SEP + user_turn(query) + TURN_SEP + thought_turn(ASSISTANT))
    # ... which is prompt_text with the thought marker in place of the answer's marker
    dialogue_part = prompt_text(query, ASSISTANT).removesuffix(assistant_turn(ASSISTANT)) + thought_turn(ASSISTANT)
    assert prompt.endswith(TURN_SEP + dialogue_part)


def test_align_exemplars_are_dialogue_turns():
    _, exemplars, _ = principles.load_alignment_text(ROOT / "principles/principles.yaml", ROOT / "principles/exemplars.yaml")
    prompt = _align_prompt("Why is the sky blue?")
    assert prompt.count(TURN_SEP + USER + " ") == len(exemplars) + 1
    for e in exemplars:
        assert TURN_SEP + user_turn(e.query) + TURN_SEP + thought_turn(ASSISTANT) + " " + e.thought in prompt
        assert TURN_SEP + assistant_turn(ASSISTANT) + " " + e.answer + TURN_SEP + USER in prompt


def test_templates_take_the_format_from_dialogue(monkeypatch):
    """Change the format in dialogue.py alone: both prompts follow it (no template spells a turn itself)."""
    for name in ("align.j2", "verbose.j2"):
        text = (ROOT / "templates" / name).read_text()
        assert USER not in text and dialogue.THOUGHT not in text and "{{ assistant }}:" not in text
    monkeypatch.setattr(dialogue, "USER", "Human:")
    monkeypatch.setattr(dialogue, "TURN_SEP", "\n")
    query = "Why is the sky blue?"
    assert prompt_text(query, ASSISTANT) == f"Human: {query}\n{ASSISTANT}:"
    assert _verbose_prompts("") == [prompt_text(q, ASSISTANT) for q in QUERIES]
    assert _verbose_prompts("Be detailed.", QUERIES[:1]) == [f"Be detailed.\nHuman: {QUERIES[0]}\n{ASSISTANT}:"]
    prompt = _align_prompt(query)
    assert "User:" not in prompt and "\n\n" not in prompt.split("by number and name.")[1]
    assert prompt.endswith(f"\nHuman: {query}\n{ASSISTANT} (internal thought):")


def _hashes() -> dict:
    return {n: Template(ROOT / "templates" / n).hash for n in ("align.j2", "verbose.j2", "topics.j2")}


def _no_strip(query: str) -> str:
    return f"{dialogue.USER} {query}"


@pytest.mark.parametrize("attr,value", [("USER", "Human:"), ("TURN_SEP", "\n"), ("THOUGHT", "(thinks)"),
                                        ("user_turn", _no_strip)])
def test_template_hash_covers_the_format(monkeypatch, attr, value):
    """A change of the format (a constant, or what a function does) changes the template_hash lineage of the
    records it shapes, though no template file changed; templates that do not use it keep the hash of their
    text alone (topics.j2, self_instruct.j2, red_team_questions.j2: their records keep their hashes)."""
    before = _hashes()
    assert before["topics.j2"] == sha256_text((ROOT / "templates/topics.j2").read_text())[:16]
    assert Template(ROOT / "templates/verbose.j2").uses_dialogue and not Template(ROOT / "templates/topics.j2").uses_dialogue
    monkeypatch.setattr(dialogue, attr, value)
    after = _hashes()
    assert after["align.j2"] != before["align.j2"] and after["verbose.j2"] != before["verbose.j2"]
    assert after["topics.j2"] == before["topics.j2"]


# (c) The stop strings come from the same constants, and stop where the format starts a turn.

def test_stop_strings_are_the_next_user_turn():
    assert align.USER_TURN == NEXT_USER_TURN and align.stops(ASSISTANT)[0] == NEXT_USER_TURN
    assert verbose.STOP == (NEXT_USER_TURN,) and xstest.STOP == (NEXT_USER_TURN,)
    # a model that goes on with the next exchange, as the prompt writes it, hits the stop string
    assert NEXT_USER_TURN in " An answer." + TURN_SEP + prompt_text("Next?", ASSISTANT)


def test_answer_end_and_parsing_use_the_assistant_marker():
    text = " A thought. I will follow 2 (informative)." + TURN_SEP + assistant_turn(ASSISTANT) + " The answer." + TURN_SEP + "More."
    end = align.answer_end(ASSISTANT).find(text)
    assert end is not None and text[:end].endswith("The answer.")
    assert align.answer_end(ASSISTANT).find(text.replace(assistant_turn(ASSISTANT), "Other:")) is None


def test_relevance_context_is_the_dialogue_without_the_user_turn():
    ctx = relevance.no_query_context(ASSISTANT)
    assert ctx == assistant_turn(ASSISTANT)
    assert prompt_text("Why?", ASSISTANT) == user_turn("Why?") + TURN_SEP + ctx


FORMAT_MODULES = ["selfalign/stages/align.py", "selfalign/stages/verbose.py", "selfalign/eval/xstest.py",
                  "selfalign/stages/relevance.py", "selfalign/data/templates.py"]


@pytest.mark.parametrize("path", FORMAT_MODULES)
def test_no_module_spells_the_format_itself(path):
    """Outside dialogue.py no string in code (docstrings aside) holds a turn marker: a literal "\\nUser:" or
    "(internal thought)" would be a second definition that this test catches."""
    tree = ast.parse((ROOT / path).read_text())
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    spelled = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and id(n) not in docstrings and (USER in n.value or dialogue.THOUGHT in n.value)]
    assert spelled == []
