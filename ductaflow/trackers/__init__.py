"""Experiment trackers: every flow run logged as a run of MLflow, Weights & Biases, or a JSONL file.

An adapter (:class:`~ductaflow.trackers.base.TrackerAdapter`) turns the lifecycle of a run into a
tracker run: ``init_run`` when it starts (params: its flattened config; tags: scenario, sweep,
git commit), ``log`` and ``log_artifact`` when it ends (the metrics it ``record()``\\ ed, its
executed notebook and log), ``finish``. The binding (backend, run id, url) goes into the run's
status record and the report links to it. Chosen by ``[tool.ductaflow] trackers = [...]``,
``conduct(trackers=...)``, ``run_notebook(trackers=...)`` or ``--tracker NAME``; see
:mod:`ductaflow.trackers.registry` for the names.
"""
