"""Listening sockets inside a sandbox's own network namespace.

A sandbox's runtime reaches the Runtime API on 127.0.0.1:9001 of its own
loopback, where a socket the host opened in that namespace listens; the host
serves it from its own event loop like any other socket. Compared with the
gateway of the bridge network, every request and answer skips the veth pair,
the bridge and its netfilter hooks (about 65 µs per round trip on our
machines, most of it kernel time charged to the host's send), and the
listener itself says which sandbox is calling: nothing else can reach it.

How: setns(2) into the namespace of the container's first process, socket,
bind, listen, setns back. setns moves only the calling thread, so this runs
on one dedicated thread that no other work shares; should it ever fail to
get back, that thread is retired and the gateway is used from then on.
Needs CAP_SYS_ADMIN (the host runs as root to drive cgroups anyway); without
it `available` is False and sandboxes use the gateway.

Owns: opening such sockets. Must not: serve them (http_server does).
"""
from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("runtime_host.backend.docker.netns")

CLONE_NEWNET = 0x40000000
LISTEN_BACKLOG = 64
_libc = ctypes.CDLL(None, use_errno=True)


class NetnsError(OSError):
    pass


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NetnsError(err, f"setns: {os.strerror(err)}")


class NetnsListeners:
    def __init__(self):
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="netns")
        self.available = True
        self.reason = ""

    def _listen(self, pid: int, address: str, port: int) -> socket.socket:
        own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
            try:
                _setns(target)
            finally:
                os.close(target)
            try:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    sock.bind((address, port))
                    sock.listen(LISTEN_BACKLOG)
                    sock.setblocking(False)
                except OSError:
                    sock.close()
                    raise
            finally:
                try:
                    _setns(own)
                except NetnsError:
                    # This thread is stuck in a sandbox's namespace: never use it again.
                    self.available, self.reason = False, "could not return from a sandbox's network namespace"
                    raise
            return sock
        finally:
            os.close(own)

    async def listen(self, pid: int, address: str, port: int) -> socket.socket | None:
        """A listening socket at address:port in the network namespace of
        process `pid`, or None (and `available` turns False on a permission
        error) when it cannot be had."""
        if not self.available:
            return None
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, self._listen, pid, address, port)
        except PermissionError as exc:
            self.available, self.reason = False, str(exc)
        except NetnsError as exc:
            if exc.errno == 1:                       # EPERM: not allowed, now or later
                self.available, self.reason = False, str(exc)
            log.debug("no listener in the namespace of pid %d: %s", pid, exc)
        except OSError as exc:                       # the process is gone: its exit event follows
            log.debug("no listener in the namespace of pid %d: %s", pid, exc)
        return None

    def close(self) -> None:
        self._thread.shutdown(wait=False)
