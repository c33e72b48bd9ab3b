"""Process infrastructure: multi-process start-up (`distributed`), SIGTERM / Ctrl-C / preemption notices
(`preemption`), glibc's huge pages for the host buffers (`host_memory`), and paths as typed and the one-run-per-workdir
lease (`workdir`). Nothing here knows a method, a model or a config schema."""
