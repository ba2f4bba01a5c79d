"""jupyter_client's side of the forking launcher: nbclient and papermill drive forked
kernels exactly as launched ones (see ``fork.py`` for the template)."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from ductaflow.kernels import TEMPLATE_ENV
from ductaflow.kernels.fork import ForkedProcess, fork_kernel, template_for

log = logging.getLogger(__name__)


def _forkable(cmd: list[str]) -> bool:
    return len(cmd) > 3 and cmd[0] == sys.executable and cmd[1:3] == ["-m", "ipykernel_launcher"]


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """jupyter_client's local provisioner, except that the kernel is forked from a template.

    Falls back to a normal launch (with a warning) when the command is not this
    interpreter's ipykernel or the template cannot serve."""

    preload: tuple[str, ...] = ()

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        if not _forkable(cmd):
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        try:
            pid = self._fork(cmd[3:], env, cwd)
        except OSError as exc:
            log.warning("forking a kernel failed (%s); launching one normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedProcess(pid)
        self.pid = self.pgid = pid
        return self.connection_info

    def _fork(self, argv: list[str], env: dict[str, str], cwd: str) -> int:
        shared = os.environ.get(TEMPLATE_ENV)
        if shared:  # inside a flow's kernel: use the template that forked it
            try:
                env[TEMPLATE_ENV] = shared
                return fork_kernel(shared, argv, env, cwd)
            except OSError as exc:
                log.info("shared kernel template at %s unusable (%s); starting one", shared, exc)
        for attempt in (1, 2):
            template = template_for(self.preload)
            env[TEMPLATE_ENV] = template.socket_path
            try:
                return fork_kernel(template.socket_path, argv, env, cwd)
            except OSError:
                if attempt == 2 or template.alive():
                    raise
        raise AssertionError("unreachable")
