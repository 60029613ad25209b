"""The reference process on SpiffWorkflow (PyPI `spiffworkflow`), in memory, one thread.

Same model as crates/flow/conformance/reference.bpmn; the condition is written as Python
(SpiffWorkflow's expression language) instead of FEEL. Prints instances/s.
"""
import sys
import time

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.util.task import TaskState

n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
xml = open(sys.argv[1], encoding="utf-8").read().replace("=amount &lt; 0", "amount &lt; 0")
path = "/tmp/zs-spiff-reference.bpmn"
open(path, "w", encoding="utf-8").write(xml)
parser = BpmnParser()
parser.add_bpmn_file(path)
spec = parser.get_spec("reference")

started = time.perf_counter()
for i in range(n):
    wf = BpmnWorkflow(spec)
    wf.get_tasks()[0].data["amount"] = 42  # the start task's data flows on
    wf.do_engine_steps()
    # Service tasks without an implementation wait as STARTED tasks: complete them like no-op handlers.
    for t in wf.get_tasks(state=TaskState.STARTED):
        t.complete()
    wf.do_engine_steps()
    assert wf.is_completed(), "instance did not complete"
secs = time.perf_counter() - started
print(f"spiffworkflow: {n} reference instances in {secs:.2f} s = {n / secs:.0f} instances/s")
