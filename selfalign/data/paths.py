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
