"""The pipeline's inputs and formats: seeds, principles, eval sets, prompt templates, the dialogue format, record lineage and the path registry."""
