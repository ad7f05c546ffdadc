"""What a sandbox may reach of this machine, by iptables rules of our own.

A sandbox's network is a Docker bridge, and Docker lets a container reach
every address of the machine it runs on (any port a process listens on with
0.0.0.0, through the bridge's gateway or the machine's other addresses) and
forwards the rest out of the machine, the cloud metadata address
169.254.169.254 included. A Lambda sandbox reaches neither its worker nor a
metadata service. So, for the host's address block (every shard's subnet):

  INPUT        from the block: accept the Runtime API's TCP port and the
               replies to what the host opened (telemetry POSTs to an
               extension's listener); drop everything else;
  DOCKER-USER  from the block to 169.254.0.0/16: drop (Docker's own chain
               for user rules, consulted before its forwarding rules).

Each rule carries a comment naming the host (`runtime-host:<host id>`), so a
host removes its own at the end and the next host removes those of hosts
that died without doing so. Blocking: call from a thread. Needs root and
iptables (Debian's docker.io depends on it); without them the host goes on
with a warning, as with the other kernel features it uses when it can.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import shlex
import subprocess
from collections.abc import Iterable

log = logging.getLogger("runtime_host.backend")

LINK_LOCAL = "169.254.0.0/16"
COMMENT_PREFIX = "runtime-host:"
IPTABLES = ("iptables", "-w", "5")        # wait for the xtables lock rather than fail beside dockerd


class FirewallError(Exception):
    """iptables is missing or refused a rule; the message says which."""


def _run(*args: str) -> str:
    try:
        done = subprocess.run([*IPTABLES, *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirewallError(f"iptables could not be run ({exc})") from None
    if done.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def _rules(block: ipaddress.IPv4Network, port: int, comment: str) -> list[tuple[str, list[str]]]:
    """(chain, rule) in the order they must end up, first rule first."""
    tag = ["-m", "comment", "--comment", comment]
    src = ["-s", str(block)]
    return [
        ("INPUT", [*src, "-p", "tcp", "--dport", str(port), *tag, "-j", "ACCEPT"]),
        ("INPUT", [*src, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *tag, "-j", "ACCEPT"]),
        ("INPUT", [*src, *tag, "-j", "DROP"]),
        ("DOCKER-USER", [*src, "-d", LINK_LOCAL, *tag, "-j", "DROP"]),
    ]


def confine(host_id: str, block: ipaddress.IPv4Network, runtime_api_port: int) -> None:
    """Puts the rules in place at the top of their chains. Raises FirewallError."""
    comment = COMMENT_PREFIX + host_id
    rules = _rules(block, runtime_api_port, comment)
    for chain, rule in reversed(rules):           # each inserted first: the list's order at the end
        _run("-I", chain, *rule)


def release(host_id: str) -> int:
    """Removes every rule of this host; how many."""
    return remove_where(lambda tagged: tagged == host_id)


def remove_orphans(live_host_ids: Iterable[str]) -> int:
    """Removes the rules of hosts that are gone; how many."""
    live = set(live_host_ids)
    return remove_where(lambda tagged: tagged not in live)


def remove_where(matches) -> int:
    removed = 0
    for chain in ("INPUT", "DOCKER-USER"):
        try:
            listing = _run("-S", chain)
        except FirewallError:
            continue                                   # no such chain (Docker without iptables)
        for line in listing.splitlines():
            found = re.search(r'--comment "?' + re.escape(COMMENT_PREFIX) + r'([0-9a-zA-Z_-]+)"?', line)
            if not found or not matches(found.group(1)) or not line.startswith(f"-A {chain} "):
                continue
            try:
                _run("-D", chain, *_split(line[len(f"-A {chain} "):]))
                removed += 1
            except FirewallError as exc:
                log.warning("could not remove a sandbox firewall rule: %s", exc)
    return removed


def _split(rule: str) -> list[str]:
    """An `iptables -S` rule back into arguments (its comment may be quoted)."""
    return shlex.split(rule)
