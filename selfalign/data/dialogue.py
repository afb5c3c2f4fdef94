"""The plain dialogue format of trained models: no principles, no exemplars (SELF-ALIGN step 3 onwards)."""


def prompt_text(query: str, assistant: str) -> str:
    """What a trained model sees before its answer; training, verbose cloning and evaluation share it."""
    return f"User: {query.strip()}\n\n{assistant}:"


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
