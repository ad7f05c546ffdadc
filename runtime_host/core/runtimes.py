"""The runtimes a function may name in function.toml, and what each one is.

Owns: the table of runtime identifiers (Lambda's, plus our `provided` short
name and `image`), which of our images runs each one, how that image starts
its runtime client and its stem program, Lambda's deprecation date of each
(docs/spec-additions.md §9), and the words of a refusal for an identifier we
do not run. config, environment, stems and the conformance runner read this
table instead of keeping lists of their own.
Must not: build images, read the clock (callers pass today's date) or touch
files.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass

PYTHON = "python"
NODE = "nodejs"
RUBY = "ruby"
PROVIDED = "provided"
IMAGE = "image"

_PYTHON_CLIENT = ("/usr/bin/python3", "-u", "/var/runtime/runtime_client.py")
_PYTHON_STEM = ("/usr/bin/python3", "-u", "/var/runtime/stem.py")
# Our Node images put node in /var/lang/bin (as Lambda does) and link it from
# /usr/bin/node, so one command serves the Debian node of nodejs18.x too.
_NODE_CLIENT = ("/usr/bin/node", "/var/runtime/runtime.js")
_NODE_STEM = ("/usr/bin/node", "/var/runtime/stem.js")
# Lambda turns off experimental features Node enables by default: require() of
# ES modules on Node 20 and 22, module syntax detection on Node 22
# (docs/spec-additions.md §9). A stem of that image starts node the same way.
_NODE20_FLAGS = ("--no-experimental-require-module",)
_NODE22_FLAGS = ("--no-experimental-require-module", "--no-experimental-detect-module")


def _node(flags: tuple[str, ...], program: tuple[str, ...]) -> tuple[str, ...]:
    return (program[0], *flags, *program[1:])
_RUBY_CLIENT = ("/usr/bin/ruby", "/var/runtime/runtime_client.rb")
_RUBY_STEM = ("/usr/bin/ruby", "/var/runtime/stem.rb")


@dataclass(frozen=True)
class Runtime:
    name: str                      # as written in function.toml
    lambda_id: str                 # what Lambda reports (AWS_EXECUTION_ENV, GetFunction)
    language: str                  # PYTHON, NODE, RUBY, PROVIDED or IMAGE
    image: str = ""                # our image that runs it ("" for image functions)
    client: tuple[str, ...] = ()   # how the image starts the runtime client (what a wrapper script is handed)
    stem: tuple[str, ...] = ()     # the stem program the image carries
    deprecated_on: datetime.date | None = None   # Lambda's deprecation (end of support, phase 1) date

    @property
    def managed(self) -> bool:
        """A language runtime of Lambda's (handler 'file.function'), not OS-only or an image."""
        return self.language in (PYTHON, NODE, RUBY)

    def deprecation(self, today: datetime.date) -> str | None:
        """The warning a function on this runtime gets, or None while Lambda still supports it."""
        if self.deprecated_on is None or today < self.deprecated_on:
            return None
        return (f"runtime {self.name!r} is deprecated: Lambda ended its support on "
                f"{self.deprecated_on:%B} {self.deprecated_on.day}, {self.deprecated_on.year} "
                f"(docs/spec-additions.md §9); it still runs here, but move to {_SUCCESSOR[self.name]}")


def _date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text)


_TABLE = (
    Runtime("python3.11", "python3.11", PYTHON, "python3.11", _PYTHON_CLIENT, _PYTHON_STEM, _date("2026-06-30")),
    Runtime("python3.13", "python3.13", PYTHON, "python3.13", _PYTHON_CLIENT, _PYTHON_STEM, _date("2029-06-30")),
    Runtime("nodejs18.x", "nodejs18.x", NODE, "nodejs18.x", _NODE_CLIENT, _NODE_STEM, _date("2025-09-01")),
    Runtime("nodejs20.x", "nodejs20.x", NODE, "nodejs20.x", _node(_NODE20_FLAGS, _NODE_CLIENT),
            _node(_NODE20_FLAGS, _NODE_STEM), _date("2026-04-30")),
    Runtime("nodejs22.x", "nodejs22.x", NODE, "nodejs22.x", _node(_NODE22_FLAGS, _NODE_CLIENT),
            _node(_NODE22_FLAGS, _NODE_STEM), _date("2027-04-30")),
    Runtime("nodejs24.x", "nodejs24.x", NODE, "nodejs24.x", _NODE_CLIENT, _NODE_STEM, _date("2028-04-30")),
    Runtime("ruby3.3", "ruby3.3", RUBY, "ruby3.3", _RUBY_CLIENT, _RUBY_STEM, _date("2027-03-31")),
    # OS-only: the bootstrap comes with the function. One image for all three;
    # `provided` is our short name for provided.al2023 (Lambda retired its own
    # `provided`, on Amazon Linux 1, in 2024).
    Runtime("provided", "provided.al2023", PROVIDED, "provided", stem=("/var/runtime/stem",),
            deprecated_on=_date("2029-06-30")),
    Runtime("provided.al2023", "provided.al2023", PROVIDED, "provided", stem=("/var/runtime/stem",),
            deprecated_on=_date("2029-06-30")),
    Runtime("provided.al2", "provided.al2", PROVIDED, "provided", stem=("/var/runtime/stem",),
            deprecated_on=_date("2026-06-30")),
    Runtime("image", "image", IMAGE),
)
RUNTIMES: dict[str, Runtime] = {runtime.name: runtime for runtime in _TABLE}

_SUCCESSOR = {
    "python3.11": "python3.13", "python3.13": "a newer Python runtime",
    "nodejs18.x": "nodejs22.x or nodejs24.x", "nodejs20.x": "nodejs22.x or nodejs24.x",
    "nodejs22.x": "nodejs24.x", "nodejs24.x": "a newer Node.js runtime", "ruby3.3": "a newer Ruby runtime",
    "provided": "a newer OS-only runtime", "provided.al2023": "a newer OS-only runtime",
    "provided.al2": "provided.al2023",
}

# Lambda runtimes we know of but cannot build here, and why (the refusal says so).
_NOT_BUILT = {
    "python3.12": "no Debian suite reachable here packages Python 3.12 (bookworm has 3.11, trixie 3.13, "
                  "forky 3.13 to 3.15)",
    "python3.14": "Python 3.14 is only in Debian testing (forky), which changes under a pinned image and whose "
                  "Release file the mirror reachable here serves expired; not offered",
    "ruby3.4": "no Debian suite reachable here packages Ruby 3.4 (trixie and forky have 3.3)",
    "ruby3.2": "Debian packages no Ruby 3.2 in a suite reachable here (bookworm 3.1, trixie 3.3)",
}


def unknown_runtime_reason(name: object) -> str:
    """What a refusal of `name` says: the runtimes that exist, and why a known Lambda one is not among them."""
    allowed = f"expected one of {', '.join(RUNTIMES)}"
    if isinstance(name, str) and name in _NOT_BUILT:
        return f"{allowed} ({name} is a Lambda runtime, but {_NOT_BUILT[name]})"
    return allowed


def runtime_images() -> tuple[str, ...]:
    """Our image names, in the table's order, each once."""
    return tuple(dict.fromkeys(runtime.image for runtime in _TABLE if runtime.image))
