import time


def handler(event, context):
    time.sleep(event.get("sleep_s", 0.3))
    print("handled event", event.get("n"), flush=True)
    return {"n": event.get("n")}
