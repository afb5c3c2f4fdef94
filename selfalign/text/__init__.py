"""Text processing with no model: near-duplicate removal, list parsing, output filters."""
