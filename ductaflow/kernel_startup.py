"""Executed in every flow kernel at start-up (``IPKernelApp.exec_files``), never imported.

ipykernel buffers stdout and stderr separately and sends each up to 0.2 s later, so lines a
flow writes alternately to the two streams reach the execution log grouped by stream.
Before a write to one stream, send what the other one still holds: the log keeps the
order the flow wrote in. Costs one round trip to the kernel's IO thread per switch.
"""


def _ductaflow_order_streams() -> None:
    import sys

    out, err = sys.stdout, sys.stderr
    if not (hasattr(out, "_flush_pending") and hasattr(err, "_flush_pending")):
        return  # not ipykernel's OutStream: nothing to do

    def ordered(stream, other):  # type: ignore[no-untyped-def]
        write = stream.write

        def ordered_write(text):  # type: ignore[no-untyped-def]
            if other._flush_pending:
                other.flush()
            return write(text)

        return ordered_write

    out.write, err.write = ordered(out, err), ordered(err, out)


_ductaflow_order_streams()
del _ductaflow_order_streams
