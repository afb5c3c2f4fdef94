"""Generation and scoring: the types, the transformers backend, the journal and shard runner, the prefix cache, model loading, prompt limits."""
