"""Answers a function URL request with the shape its path asks for."""
import base64
import json

PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\xff"


def handler(event, context):
    path = event["rawPath"]
    query = event.get("queryStringParameters") or {}
    if path == "/echo":                    # the event itself, for the tests to read
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps({"event": event, "request_id": context.aws_request_id})}
    if path == "/custom":
        return {"statusCode": int(query.get("status", "201")),
                "headers": {"Content-Type": "text/plain; charset=utf-8", "X-Custom": "yes"},
                "cookies": ["first=1; Path=/", "second=2; Max-Age=60"], "body": "created"}
    if path == "/plain":                   # no statusCode: 200 with the value as JSON
        return {"hello": "world", "n": [1, 2]}
    if path == "/string":
        return "just text"
    if path == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "image/png"},
                "body": base64.b64encode(PNG_HEADER).decode(), "isBase64Encoded": True}
    if path == "/html":
        name = query.get("name", "world")
        return {"statusCode": 200, "headers": {"content-type": "text/html; charset=utf-8"},
                "body": f"<!doctype html><title>hi</title><p>Hello, {name}!</p>"}
    if path == "/error":
        raise RuntimeError("failing on request")
    return {"statusCode": 404, "body": f"no route for {path}"}
