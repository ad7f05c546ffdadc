import json


def handler(event, context):
    print("echo-log got", json.dumps(event), flush=True)
    return event
