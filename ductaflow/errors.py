"""The ductaflow exception tree.

Every error the library raises on purpose derives from :class:`DuctaflowError` and
carries an ``exit_code`` that the CLI uses verbatim:

- ``DuctaflowError`` (2): bad input; nothing was run and nothing on disk changed.
  - ``FlowFileError``: the flow file is missing or is not a usable flow.
  - ``MissingParametersCell``: the flow has no (or more than one) cell tagged ``parameters``.
  - ``ConfigError``: a config file is missing, not JSON, not an object, or not serialisable.
  - ``InvalidName``: an instance or step name outside the safe set.
  - ``UnsafePath``: a directory inside a runs root that leads out of it through a symlink.
  - ``ScenarioError``: a scenario table that cannot become build instances.
  - ``AnalysisError``: no results table to analyse, or an unknown metric, column or baseline.
  - ``MissingExtra``: an optional integration was asked for but is not installed.
  - ``SharedFilesystemError``: distributed workers cannot see the runs root at its path.
  - ``KernelNotFound``: the kernelspec a flow declares or ``--kernel`` names is not installed.
  - ``SweepNotFound``: no sweep state of that name (or none at all) under the runs root.
- ``FlowFailed`` (1): the flow ran and ended red; ``.result`` holds the evidence.
- ``ConductorFailed`` (1): at least one scenario ended red.
"""

from __future__ import annotations

from typing import Any


class DuctaflowError(Exception):
    """Root of every error ductaflow raises deliberately."""

    exit_code: int = 2


class FlowFileError(DuctaflowError):
    """The flow file does not exist or cannot be read as a flow."""


class MissingParametersCell(FlowFileError):
    """A flow must have exactly one code cell tagged ``parameters``."""


class ConfigError(DuctaflowError):
    """A config (file or mapping) cannot be used."""


class InvalidName(DuctaflowError):
    """An instance or step name is unsafe as a directory name."""


class UnsafePath(DuctaflowError):
    """A directory that sits in a runs root but resolves outside it (a symlink), or a path holding
    a NUL character: never written or cleared."""


class ScenarioError(DuctaflowError):
    """A scenario table cannot be turned into build instances."""


class AnalysisError(DuctaflowError):
    """An analysis cannot be made: no results table, an unknown metric, column or baseline."""


class MissingExtra(DuctaflowError):
    """An optional dependency is needed; the message says what to install."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(
            f"{feature} needs the optional package '{module}': pip install 'ductaflow[{extra}]'"
        )


class SharedFilesystemError(DuctaflowError):
    """Workers on other machines cannot read or write the runs root at the same path."""


class FlowFailed(DuctaflowError):
    """The flow ran but ended red; ``result`` says where the evidence is."""

    exit_code = 1

    def __init__(self, result: Any) -> None:  # a ductaflow.store.result.FlowResult (errors import nothing)
        self.result = result
        #: why it was red, a ``core.failures.FailureKind`` value (``kernel_died``, ``user_error`` ...)
        self.kind: str | None = getattr(result, "kind", None)
        err = result.error
        what = f"{err.type}: {err.message}" if err else result.reason
        where = f" (cell {err.cell_index})" if err and err.cell_index is not None else ""
        super().__init__(
            f"flow '{result.flow}' failed{where}: {what} -- see {result.notebook_path}"
        )


class ConductorFailed(DuctaflowError):
    """One or more scenarios ended red; ``table`` holds every scenario's outcome."""

    exit_code = 1

    def __init__(self, message: str, table: Any = None) -> None:
        super().__init__(message)
        self.table = table


class WouldOverwrite(DuctaflowError):
    """An action would delete or replace a run's files, and was not forced."""


class KernelNotFound(DuctaflowError):
    """The kernelspec a flow declares (or ``--kernel`` names) is not installed."""


class SweepNotFound(DuctaflowError):
    """No sweep state file of the name asked for (or none at all) under the runs root."""
