"""HTML for the console: escaping and the templates' one substitution rule.

Owns: turning values into HTML text. Every value put into a template is
escaped (`&`, `<`, `>`, `"`, `'`) unless it is `Markup`, which only this
package's own code makes, from strings it built out of escaped parts. So a
function name, a payload or a log line can never become markup, whoever
wrote it.
Must not: know routes, the host or the ledger (page.py and charts.py do).

Templates are files in templates/ (package data) with `{{name}}` holes; a
hole that names no value is a bug and raises, rather than showing nothing.
"""
from __future__ import annotations

import html
import json
import re
from functools import lru_cache
from importlib import resources


class Markup(str):
    """A string already safe as HTML (built by this package from escaped parts)."""


def esc(value: object) -> Markup:
    """value as HTML text: Markup passes unchanged, None shows as nothing, anything else escaped."""
    if isinstance(value, Markup):
        return value
    return Markup(html.escape("" if value is None else str(value), quote=True))


def join(parts) -> Markup:
    return Markup("".join(esc(p) for p in parts))


def tag(name: str, content: object = "", **attrs: object) -> Markup:
    """<name attr="...">content</name>, attribute values and content escaped.
    A trailing '_' in an attribute name is dropped (class_ -> class)."""
    rendered = "".join(f' {k.rstrip("_").replace("_", "-")}="{esc(v)}"' for k, v in attrs.items() if v is not None)
    return Markup(f"<{name}{rendered}>{esc(content)}</{name}>")


def json_for_script(value: object) -> Markup:
    """JSON safe inside <script type="application/json">: no '<', '>' or '&'
    (so no </script> can end the element early), no U+2028/9."""
    text = json.dumps(value)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                         ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(raw, escaped)
    return Markup(text)


_HOLE = re.compile(r"\{\{(\w+)\}\}")


@lru_cache(maxsize=None)
def template(name: str) -> str:
    return resources.files("runtime_host.api.console").joinpath("templates", name).read_text(encoding="utf-8")


def fill(text: str, /, **values: object) -> Markup:
    """text with each {{name}} replaced by esc(values[name])."""
    def hole(match: re.Match) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"template hole {{{{{key}}}}} has no value")
        return esc(values[key])
    return Markup(_HOLE.sub(hole, text))


def render(template_name: str, /, **values: object) -> Markup:
    return fill(template(template_name), **values)
