"""What a user reads after a run: the CLI, lineage, the HTML report, README tables, timings."""
