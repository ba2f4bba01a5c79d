"""Typed events for the moments a run starts and ends, and the dispatcher that hands them to consumers."""
