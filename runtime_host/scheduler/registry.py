"""The one registry of live containers: every sandbox and stem cell, by the
address its calls come from and by its container id.

Owns: who a Runtime API call comes from, and whose container an exit event
is about. Nothing else keeps an address book.
Must not: decide anything about the sandboxes it lists; their state is in
their own `life`.
"""
from __future__ import annotations

from typing import Protocol

from runtime_host.backend.interface import Container, ExitInfo


class Member(Protocol):
    """A sandbox or a stem cell: it holds a container and hears its exit."""
    container: Container | None

    def on_exit(self, info: ExitInfo) -> None: ...


class Registry:
    def __init__(self) -> None:
        self._by_address: dict[str, Member] = {}
        self._by_container: dict[str, Member] = {}

    def add(self, member: Member, container: Container) -> None:
        """From the moment a container exists (before it starts: its first call may come at once)."""
        self._by_address[container.address] = member
        self._by_container[container.id] = member

    def remove(self, member: Member, container: Container | None) -> None:
        if container is None:
            return
        if self._by_address.get(container.address) is member:
            del self._by_address[container.address]
        if self._by_container.get(container.id) is member:
            del self._by_container[container.id]

    def at(self, address: str) -> Member | None:
        return self._by_address.get(address)

    def of_container(self, container_id: str) -> Member | None:
        return self._by_container.get(container_id)

    def on_exit(self, container_id: str, info: ExitInfo) -> None:
        """The backend's exit events land here and go to the container's owner."""
        member = self._by_container.get(container_id)
        if member is not None:
            member.on_exit(info)
