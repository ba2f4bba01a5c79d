"""Which kernel a flow runs in: the kernelspec its notebook declares, or the one asked for.

- A flow that declares no kernelspec, or ``python3`` (Jupyter's default name for Python),
  runs in ductaflow's own Python kernel: this interpreter, forked from a warm template.
- A flow that declares another kernelspec (``ir``, a conda env's ``myenv``) runs in that
  kernelspec, launched by jupyter_client as Jupyter would launch it, when it is installed;
  when it is not, the run stops before anything is written, naming it and the installed ones.
- A kernel asked for by name (``--kernel NAME``, ``kernel_name=``) overrides the declaration
  and is taken literally: ``--kernel python3`` is the installed ``python3`` kernelspec.
"""

from __future__ import annotations

from ductaflow.core.flowfile import NATIVE_KERNEL, Flow
from ductaflow.errors import FlowFileError, KernelNotFound


def choose_kernel(flow: Flow, override: str | None = None) -> dict[str, str] | None:
    """The kernelspec ``flow`` runs in, as notebook metadata (``name``, ``display_name``,
    ``language``); None for ductaflow's own Python kernel. Raises
    :class:`~ductaflow.errors.KernelNotFound` when the kernelspec is not installed."""
    name = override or flow.kernel_name
    if name is None or (override is None and name == NATIVE_KERNEL):
        if name is None and flow.language != "python":
            raise KernelNotFound(
                f"{flow.path.name} is a {flow.language} notebook that names no kernelspec: "
                f"choose one with --kernel NAME (kernel_name=); installed: {_installed()}"
            )
        return None
    # heavy: jupyter_client's kernelspec module, only for a flow that names a kernel of its own
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        whose = "asked for with --kernel (kernel_name=)" if override else f"that {flow.path.name} declares"
        raise KernelNotFound(
            f"the kernel '{name}' {whose} is not installed (installed kernelspecs: {_installed()}); "
            "install it, or run the flow in another one with --kernel NAME"
        ) from None
    language = str(spec.language or "python")
    if language.lower() != "python":
        _check_translatable(flow, name, language)
    return {"name": str(name), "display_name": str(spec.display_name or name), "language": language}


def _installed() -> str:
    """The installed kernelspec names, comma-separated (``none`` when there are none)."""
    # heavy: jupyter_client's kernelspec module, deferred to the error that needs it
    from jupyter_client.kernelspec import KernelSpecManager

    return ", ".join(sorted(KernelSpecManager().find_kernel_specs())) or "none"


def _check_translatable(flow: Flow, name: str, language: str) -> None:
    """Refuse, before anything is written, a kernel whose language papermill cannot write the
    config cell in (its translators: R, Julia, Scala, MATLAB, PowerShell, ...)."""
    # heavy: papermill, deferred until a flow in another language is planned
    from papermill.exceptions import PapermillException
    from papermill.translators import papermill_translators  # deferred with the line above

    try:
        papermill_translators.find_translator(name, language)
    except PapermillException:
        raise FlowFileError(
            f"{flow.path.name}: ductaflow cannot write a config cell in {language} (kernel '{name}'): "
            "papermill has no translator for it"
        ) from None
