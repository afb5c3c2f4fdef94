"""Where the pipeline's files live: one registry that the rules, the scripts and the audit tools read."""
from __future__ import annotations

# Every file that holds records, by dataset name (selfalign/validation/), in pipeline order: the rules
# write them (rules/common.smk), lineage follows them, the report reads them. Seeds are roots.
RECORD_FILES = {
    "red_team_types": "data/seeds/red_team_types.jsonl",
    "self_instruct": "data/seeds/self_instruct.jsonl",
    "topics": "data/topics/topics.jsonl",
    "queries": "data/queries/queries.jsonl",
    "queries_rejected": "data/queries/rejected.jsonl",
    "aligned": "data/aligned/aligned.jsonl",
    "aligned_rejected": "data/aligned/rejected.jsonl",
    "verbose": "data/verbose/verbose.jsonl",
    "verbose_rejected": "data/verbose/rejected.jsonl",
}

# The DVC stages (one per rules/<stage>.smk), in pipeline order.
STAGES = ("check", "model", "topics", "queries", "align", "engrave", "verbose", "verbose_clone", "eval")
# The stages whose records the quality set labels (selfalign/eval/quality.py).
GENERATION_STAGES = ("topics", "queries", "align", "verbose")

# The checkpoints eval compares, in order (base first: the others are tested against it), and their folders.
CHECKPOINTS = {"base": "models/base", "engraved": "models/engraved", "final": "models/final"}

# Where a generation job journals its finished batches (selfalign/engine/journal.py), one folder per journal name.
JOURNAL_ROOT = ".selfalign/journal"


def journal_dir(name: str) -> str:
    return f"{JOURNAL_ROOT}/{name}"


def named_folders(pairs: list[str], flag: str) -> dict[str, str]:
    """`NAME=FOLDER` command-line pairs as {name: folder}; a pair without '=' is an error naming `flag`."""
    from selfalign.core.files import InputError

    found = dict(p.split("=", 1) for p in pairs if "=" in p)
    if len(found) != len(pairs):
        raise InputError(f"{flag} takes NAME=FOLDER pairs, got {pairs}")
    return found
