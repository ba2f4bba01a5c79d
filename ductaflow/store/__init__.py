"""The one owner of what ductaflow writes: instance layout, status records, ledger, metrics, atomic writes, locks."""
