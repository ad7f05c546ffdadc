def handler(event, context):
    print("handler says hello", flush=True)
    return {"request_id": context.aws_request_id}
