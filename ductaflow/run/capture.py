"""Live capture of a flow's stdout/stderr into ``<flow>_execution_output.txt``.

Only text the flow's own process writes reaches the sink, so framework messages of the
process that runs the flow can never turn it orange. Each write is flushed at once so
``tail -f`` shows progress. :class:`OutputSink` is fed by a kernel's stream messages
(notebook mode) or by :class:`FdCapture`, which captures a script-mode flow's own file
descriptors 1 and 2: Python's ``print``, subprocesses, ``os.system`` and C code alike.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import selectors
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any, TextIO

from ductaflow.core.lights import is_python_warning_line, is_warning_line

try:  # POSIX: how many bytes wait in a pipe, and how big a pipe may be
    import fcntl
    import termios
except ImportError:  # pragma: no cover - not POSIX
    fcntl = termios = None  # type: ignore[assignment]

#: Characters of one line kept for the warning rule (the marker rule reads 15; a Python
#: warning's ``file:line: Category:`` header fits easily). Longer lines are cut, in memory only.
LINE_KEEP = 16_384


class _Line:
    """The unfinished line of one stream, as a terminal would show it: the text after its
    last carriage return (a trailing ``\\r`` shows the text before it). Linear in the input."""

    __slots__ = ("_parts", "_kept", "_shown")

    def __init__(self) -> None:
        self._parts: list[str] = []  # the segment being written (since the last "\r"), cut at LINE_KEEP
        self._kept = 0
        self._shown = ""  # the last non-empty finished segment of this line

    def feed(self, text: str) -> list[str]:
        """Add ``text``; return the lines it finished, as displayed."""
        done: list[str] = []
        for i, chunk in enumerate(text.split("\n")):
            if i:
                done.append(self.end())
            for j, segment in enumerate(chunk.split("\r")):
                if j:
                    self._end_segment()
                if segment and self._kept < LINE_KEEP:
                    segment = segment[: LINE_KEEP - self._kept]
                    self._parts.append(segment)
                    self._kept += len(segment)
        return done

    def _end_segment(self) -> None:
        if self._kept:
            self._shown = "".join(self._parts)
            self._parts.clear()
            self._kept = 0

    def end(self) -> str:
        """Finish the line; return it as displayed."""
        self._end_segment()
        line, self._shown = self._shown, ""
        return line


class OutputSink:
    """Append-only, flushed log of stream text, with the warning lines it has seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = open(path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
        self._lock = threading.Lock()
        self._lines: dict[str, _Line] = {}
        self.warning_lines: list[str] = []
        self.python_warnings: list[str] = []

    def write(self, stream: str, text: str) -> None:
        """Record ``text`` from ``stream`` ("stdout" or "stderr")."""
        if not text:
            return
        with self._lock:
            if self._fh is not None:
                try:
                    self._fh.write(text)
                    self._fh.flush()
                except (OSError, ValueError):
                    self._fh = None  # a full disk must not kill the flow; status still records
            line = self._lines.get(stream)
            if line is None:
                line = self._lines[stream] = _Line()
            for done in line.feed(text):
                self._scan(stream, done)

    def _scan(self, stream: str, line: str) -> None:
        if is_warning_line(line):
            self.warning_lines.append(line)
        elif stream == "stderr" and is_python_warning_line(line):
            self.python_warnings.append(line)

    @property
    def warnings(self) -> list[str]:
        """Every line that makes a completed flow orange, in order of kind."""
        return self.warning_lines + self.python_warnings

    def close(self) -> None:
        """Scan any unterminated last lines and close the file."""
        with self._lock:
            for stream, line in self._lines.items():
                last = line.end()
                if last:
                    self._scan(stream, last)
            self._lines.clear()
            if self._fh is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass
                self._fh = None


def _pending(fd: int) -> int:
    """Bytes written to the pipe ``fd`` and not yet read (0 when it cannot be told)."""
    if termios is None:
        return 0
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"), sys.byteorder)
    except OSError:
        return 0


class _OrderedFile(io.FileIO):
    """fd 1 or 2 while captured: before a write, wait (at most ``WAIT_S``) until the reader
    has taken what the other stream's pipe holds, so the log keeps the order of the writes."""

    WAIT_S = 0.05

    def __init__(self, fd: int, other_pipe: int) -> None:
        super().__init__(fd, "w", closefd=False)
        self._other = other_pipe

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        if not view:
            return 0
        if self._other >= 0 and _pending(self._other):
            start = time.monotonic()
            while _pending(self._other) and (waited := time.monotonic() - start) < self.WAIT_S:
                time.sleep(0 if waited < 0.001 else 0.0005)  # yield to the reader; after 1 ms, nap
        done = 0
        while done < len(view):
            done += super().write(view[done:]) or 0
        return done

    def unpair(self) -> None:
        """Capture over: write without waiting (a handler may still hold this stream)."""
        self._other = -1


def _ordered(stream: TextIO, fd: int, other_pipe: int) -> TextIO:
    """A text stream like ``stream`` on ``fd`` that writes at once, in order with the other
    stream; ``stream`` itself when it is not a stream on ``fd`` (a caller's own redirect)."""
    try:
        if stream.fileno() != fd:
            return stream
        stream.flush()
    except (AttributeError, OSError, ValueError):
        return stream
    return io.TextIOWrapper(
        _OrderedFile(fd, other_pipe),  # type: ignore[arg-type]
        encoding=getattr(stream, "encoding", None) or "utf-8",
        errors=getattr(stream, "errors", None) or "strict",
        line_buffering=True,
        write_through=True,
    )


class FdCapture:
    """Route this process's fds 1 and 2 through pipes into ``sink`` and on to the terminal.

    ``start`` points fds 1 and 2 at pipes (so subprocesses, ``os.system`` and C code are
    captured too) and ``sys.stdout``/``sys.stderr`` at ordered, unbuffered streams on them;
    one reader thread writes each chunk to the original terminal fd and to the sink, live.
    ``stop`` restores everything and returns once what was written is in the sink (at most
    ``join_s``); a background process still holding the pipes is shown, not waited for.
    """

    PIPE_SIZE = 1 << 20  # room for a burst written while the reader waits for the GIL

    def __init__(self, sink: OutputSink) -> None:
        self.sink = sink
        self._saved: dict[int, int] = {}
        self._streams: dict[int, tuple[str, int, Any]] = {}  # read end -> name, terminal fd, decoder
        self._python: tuple[TextIO, TextIO] | None = None  # the Python streams to restore
        self._ours: tuple[TextIO, ...] = ()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()  # held by the reader while it moves a chunk

    def start(self) -> None:
        originals = self._python = (sys.stdout, sys.stderr)  # set first: stop() undoes a partial start
        for stream in originals:
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
        reads: dict[int, int] = {}
        for fd, name, stream in ((1, "stdout", originals[0]), (2, "stderr", originals[1])):
            read, write = os.pipe()
            if hasattr(fcntl, "F_SETPIPE_SZ"):
                with contextlib.suppress(OSError):
                    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, self.PIPE_SIZE)
            try:
                self._saved[fd] = os.dup(fd)
            except OSError:  # started with the fd closed: nothing to show the output on
                self._saved[fd] = -1
            os.dup2(write, fd)  # inheritable: subprocesses write into the pipe too
            os.close(write)
            decoder = codecs.getincrementaldecoder(getattr(stream, "encoding", None) or "utf-8")("replace")
            self._streams[read] = (name, self._saved[fd], decoder)
            reads[fd] = read
        self._ours = (_ordered(originals[0], 1, reads[2]), _ordered(originals[1], 2, reads[1]))
        sys.stdout, sys.stderr = self._ours
        self._thread = threading.Thread(target=self._pump, name="ductaflow-capture", daemon=True)
        self._thread.start()

    def stop(self, join_s: float = 2.0) -> None:
        """Flush, restore fds 1 and 2 and the Python streams, let the reader drain, and return."""
        if self._python is None:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(AttributeError, OSError, ValueError):
                stream.flush()
        for stream in self._ours:
            raw = getattr(stream, "buffer", None)
            if isinstance(raw, _OrderedFile):
                raw.unpair()
        sys.stdout, sys.stderr = self._python
        self._python = None
        for fd, saved in self._saved.items():  # the pipes' write ends then live only in processes still running
            if saved >= 0:
                os.dup2(saved, fd)
            else:
                os.close(fd)
        if self._thread is None:
            return
        self._drain(time.monotonic() + join_s)
        if not self._thread.is_alive():
            for fd in [*self._streams, *self._saved.values()]:
                if fd >= 0:
                    with contextlib.suppress(OSError):
                        os.close(fd)

    def _drain(self, deadline: float) -> None:
        """Until ``deadline``: wait for end of file, or for the pipes to be empty with the reader
        between chunks (a background process may hold the pipes open, and is not waited for)."""
        assert self._thread is not None
        while self._thread.is_alive() and time.monotonic() < deadline:
            if self._empty() and self._busy.acquire(timeout=max(0.0, deadline - time.monotonic())):
                try:
                    if self._empty():  # and all that was read is in the sink
                        return
                finally:
                    self._busy.release()
            self._thread.join(0.01)

    def _empty(self) -> bool:
        return not any(_pending(fd) for fd in self._streams)

    def _pump(self) -> None:
        with selectors.DefaultSelector() as sel:
            for fd in self._streams:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                for key, _ in sel.select():
                    with self._busy:
                        more = self._forward(key.fd)
                    if not more:
                        sel.unregister(key.fd)

    def _forward(self, fd: int) -> bool:
        """Move one chunk from pipe ``fd`` to the terminal and the sink; False at end of file."""
        name, terminal, decoder = self._streams[fd]
        try:
            data = os.read(fd, 1 << 16)
        except OSError:
            data = b""
        try:
            if data and terminal >= 0:
                self._show(fd, terminal, data)
            self.sink.write(name, decoder.decode(data, final=not data))
        except Exception:  # noqa: BLE001 - the reader must keep draining, or the flow blocks
            pass
        return bool(data)

    def _show(self, fd: int, terminal: int, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(terminal, view) :]
        except OSError:  # the terminal went away (closed, broken pipe): keep logging
            name, _, decoder = self._streams[fd]
            self._streams[fd] = (name, -1, decoder)
