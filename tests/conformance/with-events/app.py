"""Conformance fixture: greets by name; fails on request with a ValueError."""


def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"greeting": f"hello {event.get('name', 'world')}"}
