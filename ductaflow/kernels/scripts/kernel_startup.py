"""Executed in every flow kernel at start-up (``IPKernelApp.exec_files``), never imported.

ipykernel buffers stdout and stderr separately and sends each up to 0.2 s later, so lines a
flow writes alternately to the two streams reach the execution log grouped by stream.
Before a write to one stream, flush the other if it was written since its last flush: the
log keeps the order the flow wrote in. Costs one round trip to the kernel's IO thread per
switch of stream; uses only the streams' public ``write`` and ``flush``.

The streams' ``write`` is wrapped on the two stream objects of this kernel (ipykernel's
``IPKernelApp.outstream_class`` would need an importable module: the kernel could then not
run without ductaflow importable, nor with nothing of ductaflow's imported).
"""


def _ductaflow_order_streams() -> None:
    import sys

    out, err = sys.stdout, sys.stderr
    if type(out).__module__ != "ipykernel.iostream" or type(err) is not type(out):
        return  # not ipykernel's OutStream: nothing to do
    written = {id(out): False, id(err): False}  # written since we last flushed it

    def ordered(stream, other):  # type: ignore[no-untyped-def]
        write = stream.write

        def ordered_write(text):  # type: ignore[no-untyped-def]
            if written[id(other)]:
                written[id(other)] = False
                other.flush()
            written[id(stream)] = True
            return write(text)

        return ordered_write

    out.write, err.write = ordered(out, err), ordered(err, out)  # type: ignore[method-assign]


_ductaflow_order_streams()
del _ductaflow_order_streams
