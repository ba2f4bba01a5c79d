"""Scenario analysis over what a build's flows recorded: which scenario is best, by how much, how sure.

``load`` reads ``runs/<build>/results.parquet`` (through its owner, :mod:`ductaflow.store.results`);
``compare``, ``stability``, ``pareto`` and ``sensitivity`` work on that table, ``resources`` on the
run ledger. Every function returns a pandas DataFrame; ``ductaflow analyze`` prints them.
"""

from ductaflow.analysis.methods import compare, pareto, sensitivity, stability
from ductaflow.analysis.resources import resources
from ductaflow.analysis.table import Table, builds_with_results, load

__all__ = ["Table", "builds_with_results", "compare", "load", "pareto", "resources", "sensitivity", "stability"]
