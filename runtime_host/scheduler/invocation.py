"""An invocation someone waits for: the core record with the event loop's futures.

Owns: `outcome` (the caller's answer), `finished` (the runtime is back in
GET next, or the invocation failed) and `reported` (END and REPORT written).
Must not: change the invocation's state (core/invocation.py does, through
its table).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass

from runtime_host.core.invocation import Invocation, Outcome


@dataclass(eq=False)
class LiveInvocation(Invocation):
    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.outcome: asyncio.Future[Outcome] = loop.create_future()
        self.finished: asyncio.Future[None] = loop.create_future()
        self.reported: asyncio.Future[None] = loop.create_future()

    def _answered(self, outcome: Outcome) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)

    def _ended(self) -> None:
        if not self.finished.done():
            self.finished.set_result(None)

    def mark_reported(self) -> None:
        if not self.reported.done():
            self.reported.set_result(None)
