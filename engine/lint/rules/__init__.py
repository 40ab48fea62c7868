"""One module per lint rule. See `engine.lint.registry` for the list."""
