"""Run one flow into one instance directory: the lifecycle of a single execution."""
