"""conformance-extension for images with python3 but no curl."""
import os
import urllib.request

API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2020-01-01/extension"
request = urllib.request.Request(f"{API}/register", data=b'{"events": ["INVOKE", "SHUTDOWN"]}', method="POST",
                                 headers={"Lambda-Extension-Name": "conformance-extension"})
ext_id = urllib.request.urlopen(request).headers["Lambda-Extension-Identifier"]
print("conformance-extension: registered", flush=True)
while True:
    next_event = urllib.request.Request(f"{API}/event/next", headers={"Lambda-Extension-Identifier": ext_id})
    event = urllib.request.urlopen(next_event).read().decode()
    print(f"conformance-extension: {event}", flush=True)
    if "SHUTDOWN" in event:
        break
