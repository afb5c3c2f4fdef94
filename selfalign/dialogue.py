"""The plain dialogue format of trained models: no principles, no exemplars (SELF-ALIGN step 3 onwards)."""


def prompt_text(query: str, assistant: str) -> str:
    """What a trained model sees before its answer; training, verbose cloning and evaluation share it."""
    return f"User: {query.strip()}\n\n{assistant}:"
