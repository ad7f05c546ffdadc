import json
import os


def lambda_handler(event, context):
    """The hello world of `sam init`: an HTTP API (payload 2.0) response."""
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({
            "message": os.environ["GREETING"],
            "stage": os.environ["STAGE"],
            "version": os.environ["AWS_LAMBDA_FUNCTION_VERSION"],
            "path": event.get("rawPath"),
        }),
    }
