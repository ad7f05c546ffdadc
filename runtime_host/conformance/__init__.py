"""`runtime-host conformance PATH`: does a runtime follow the Runtime API
contract, and will it survive what Lambda does to it?

Owns: the scenarios (scenarios.py, one function each, with what it expects
and the hint that fixes a failure), running them against a real in-process
Host (runner.py), watching the runtime's protocol calls through the Runtime
API's observer hook (observer.py), the target (target.py: a function folder
or a bare bootstrap) and the report as a table, JSON or JUnit XML
(report.py). cli.py is the subcommand.
Must not: change how the host behaves. Every observation comes through the
host (its Runtime API, its invocations' outcomes, its sandboxes and their
cgroups and logs); the handler is asked for nothing, except the deadline
probe of our own python/node clients (scenarios.respects_deadline).
"""
from runtime_host.conformance.runner import run_conformance
from runtime_host.conformance.scenarios import SCENARIOS

__all__ = ["run_conformance", "SCENARIOS"]
