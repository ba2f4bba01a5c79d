"""ductaflow's papermill engine, as papermill finds it: through the ``papermill.engine``
entry point (pyproject.toml), loaded by papermill while ``papermill.engines`` is imported.

It lives apart from ``engine.py`` (the client it runs flows with) because papermill loads
it in the middle of its own import: this module needs only names papermill has defined by
then, and imports the client when a notebook is executed.
"""

from __future__ import annotations

import time
from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager

#: At most one intermediate save of the output notebook per this many seconds.
SAVE_EVERY_S = 1.0


class ThrottledSaves(NotebookExecutionManager):
    """papermill's execution manager, except that while ``throttle`` is set it saves the
    notebook at most once a second: papermill saves before and after every cell, and one
    intermediate save a second is plenty to follow a run or survive a crash. The first
    save and the final one (also of a failed run) are not throttled."""

    throttle = False
    _last_save = 0.0

    def save(self, **kwargs: Any) -> None:
        if self.throttle and time.monotonic() - self._last_save < SAVE_EVERY_S:
            if kwargs.get("nb") is not None:  # as papermill's save would
                self.nb = kwargs["nb"]
            return
        super().save(**kwargs)
        self._last_save = time.monotonic()


class DuctaflowEngine(NBClientEngine):
    """The ``nbclient`` engine with ductaflow's client (``engine.DuctaflowClient``): live
    output capture, kernel tracking, forked and pre-started kernels."""

    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str | None,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> Any:
        """papermill's ``Engine.execute_notebook``, with :class:`ThrottledSaves` as the manager.

        The executed notebook stays lean: its metadata names the source by path (``source_path``)
        instead of the copy of the whole input papermill keeps for a notebook passed as an
        object, and outputs stored in the source are cleared before any cell runs. Its
        ``parameters`` are the ones ductaflow injected (``recorded_parameters``). A run that
        stops mid-cell (timeout, interrupt, dead kernel) leaves papermill's banner too.
        """
        source = kwargs.pop("source_path", None)
        parameters = kwargs.pop("recorded_parameters", None)
        meta = nb.metadata.setdefault("papermill", {})
        if source is not None:
            meta["input_path"] = str(source)
        if parameters is not None:  # ductaflow injects its own cell, so papermill saw none
            meta["parameters"] = parameters
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = []
                cell.execution_count = None
        nb_man = ThrottledSaves(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        nb_man.throttle = True
        stopped = False
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        except BaseException:
            stopped = True  # a timeout, an interrupt, a dead kernel: the client marked the cell
            raise
        finally:
            nb_man.throttle = False
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
            if stopped:  # papermill writes its banner only for a notebook the engine returned
                # deferred: papermill imports this module while it is itself being imported
                from ductaflow.kernels.evidence import add_banner

                add_banner(nb_man.nb, output_path)
        return nb_man.nb

    @classmethod
    def execute_managed_notebook(
        cls,
        nb_man: Any,
        kernel_name: str | None,
        log_output: bool = False,
        stdout_file: Any = None,
        stderr_file: Any = None,
        start_timeout: int = 60,
        execution_timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        # deferred: papermill imports this module while it is itself being imported
        from ductaflow.kernels.engine import DuctaflowClient, log

        for unused in ("input_path", "timeout", "startup_timeout"):
            kwargs.pop(unused, None)
        client = DuctaflowClient(
            nb_man,
            timeout=execution_timeout,
            startup_timeout=start_timeout,
            kernel_name=kernel_name,
            log=log,
            log_output=False,
            shutdown_kernel="immediate",
            **kwargs,
        )
        return client.execute()
