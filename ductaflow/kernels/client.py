"""The kernel client ductaflow's kernel managers hand out (their ``client_class``).

Kept apart from the engine so that a kernel can be started, and its client made, without
importing papermill (see :func:`ductaflow.kernels.prestart.start_early`).
"""

from __future__ import annotations

import time
from queue import Empty
from typing import Any

from jupyter_client import protocol_version_info
from jupyter_client.asynchronous import AsyncKernelClient


class ReadyClient(AsyncKernelClient):
    """jupyter_client's async client (a kernel manager's ``client_class``), minus a fixed
    cost: its ``wait_for_ready`` ends by draining IOPub until 0.2 s pass in silence, on every
    kernel. Start-up messages carry no request of ours (nbclient only reads replies to its
    own requests), so a short drain suffices."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))
        while True:
            self.kernel_info()
            try:
                msg = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                msg = None
            if msg is not None and msg["msg_type"] == "kernel_info_reply":
                try:  # IOPub connected: the kernel's busy/idle for that request comes through
                    await self.iopub_channel.get_msg(timeout=1)
                except Empty:
                    pass
                else:
                    self._adapt_protocol(msg)
                    break
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:.0f} seconds")
        while True:  # drop what is already queued, without waiting for silence
            try:
                await self.iopub_channel.get_msg(timeout=_DRAIN_S)
            except Empty:
                break

    def _adapt_protocol(self, reply: dict[str, Any]) -> None:
        """What jupyter_client's own wait does with the kernel_info reply: speak the kernel's
        major protocol version if it is not ours (``Session.adapt_version``)."""
        major = int(reply["content"]["protocol_version"].split(".")[0])
        if major != protocol_version_info[0]:
            self.session.adapt_version = major




_DRAIN_S = 0.01
