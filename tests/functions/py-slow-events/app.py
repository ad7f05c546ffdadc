import time


def handler(event, context):
    if event.get("fail"):
        raise RuntimeError(f"failing event {event.get('n')} on request")
    time.sleep(event.get("sleep_s", 0.3))
    print("handled event", event.get("n"), flush=True)
    return {"n": event.get("n")}
