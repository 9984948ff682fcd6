"""Fault injection: process faults (``scenarios``) and fuzzed input (``fuzz``) a pipeline must survive.

``streamrank chaos <scenario>`` starts what a scenario needs (the embedded broker, worker
processes, an encoder service), drives real MovieLens events, injects its fault, waits
until the pipeline is quiet, checks its property against a reference computed without
faults, and reports its figures (docs/reliability.md, "Fault scenarios").

- ``cluster``: the processes of one scenario, started and stopped by PID.
- ``topics``: reading topics and tables back, end and committed offsets, quiet detection.
- ``reference``: the state the events must produce, and the comparison with the workers'.
- ``lists``: what the ``recommendations`` topic shows (re-emitted lists, gaps, answers).
- ``driver``: a rate-limited producer of the traffic, run beside the faults.
- ``proxy``: a TCP relay in front of the encoder service that can answer 503.
- ``harness``: the workload, the start and the checks every scenario shares.
- ``scenarios`` (kill -9, broker freeze), ``outage`` (encoder service), ``fuzzing`` (the
  payloads of ``fuzz`` among valid traffic): the scenarios; ``runner``: their registry.
"""
