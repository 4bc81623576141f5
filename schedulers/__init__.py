"""Pure policy, no Ray and no I/O: state machines, queues, routing rules, admission. Unit-tested alone."""
