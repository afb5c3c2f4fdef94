"""The method's stages as pure functions: topics, queries, align, verbose, and the input checks."""
