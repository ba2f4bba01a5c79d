"""How flow kernels start and stop: the papermill engine, forked kernels, pre-started kernels."""
