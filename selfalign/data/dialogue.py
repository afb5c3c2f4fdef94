"""The dialogue format: its one definition (SELF-ALIGN step 3 onwards trains on the plain dialogue).

    User: <query>\n\n<Assistant>: <answer>

Everything that writes or reads this format takes its pieces from here: `prompt_text` (training,
evaluation, relevance), the stop strings of the align, verbose and xstest stages, and the templates
(selfalign/data/templates.py gives every template `template_vars()`; align.j2 and verbose.j2 spell no
turn marker themselves). The align prompt's exemplars add a thought turn before each answer
(`thought_turn`); trained models never see it. `format_signature()` goes into the hash of a template that
uses these pieces, so a change of the format changes the `template_hash` lineage of its records.
"""
import json

USER = "User:"  # the user's turn marker
TURN_SEP = "\n\n"  # between one turn and the next
THOUGHT = "(internal thought)"  # after the assistant's name: the align exemplars' thought turn
NEXT_USER_TURN = "\n" + USER  # stop string: the model began the next user turn


def user_turn(query: str) -> str:
    """The user's turn (the query without surrounding white space)."""
    return f"{USER} {query.strip()}"


def assistant_turn(assistant: str) -> str:
    """The marker that opens the assistant's turn: "Sage:"."""
    return f"{assistant}:"


def thought_turn(assistant: str) -> str:
    """The marker that opens the assistant's internal thought in the align prompt: "Sage (internal thought):"."""
    return f"{assistant} {THOUGHT}:"


def prompt_text(query: str, assistant: str) -> str:
    """What a trained model sees before its answer; training, verbose cloning and evaluation share it."""
    return user_turn(query) + TURN_SEP + assistant_turn(assistant)


def encode_pair(tok, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Token ids of a (context, continuation) pair, split as lm-evaluation-harness splits them: the context
    tokenized alone, and what the tokenization of context + continuation adds after it (trailing
    whitespace of the context belongs to the continuation).

    Training and scoring both use it, so a model is scored on the very tokens it was trained on.
    Tokenizing the continuation alone would differ for SentencePiece tokenizers that add a dummy
    prefix (Llama 2): " answer" alone starts with an extra "▁" piece that the joint text never has.
    """
    n_space = len(context) - len(context.rstrip())
    if n_space:
        context, continuation = context[:-n_space], context[-n_space:] + continuation
    whole = tok(context + continuation)["input_ids"]
    ctx = tok(context)["input_ids"]
    return ctx, whole[len(ctx):]


def template_vars() -> dict:
    """What every template can use (selfalign/data/templates.py adds them to each render)."""
    return {"turn_sep": TURN_SEP, "user_turn": user_turn, "assistant_turn": assistant_turn,
            "thought_turn": thought_turn, "prompt_text": prompt_text}


def format_signature() -> str:
    """The format as text: the constants and what the functions make of a probe, so a change of a function's
    body (no longer stripping the query, say) shows too, and a docstring edit does not."""
    return json.dumps({
        "USER": USER, "TURN_SEP": TURN_SEP, "THOUGHT": THOUGHT, "NEXT_USER_TURN": NEXT_USER_TURN,
        "user_turn": user_turn(" \n{query} \n"), "assistant_turn": assistant_turn("{assistant}"),
        "thought_turn": thought_turn("{assistant}"), "prompt_text": prompt_text(" \n{query} \n", "{assistant}"),
        "template_vars": sorted(template_vars()),
    }, sort_keys=True)
