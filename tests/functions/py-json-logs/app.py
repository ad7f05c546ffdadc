"""Logs below and at the function's application log level, and prints."""
import logging

logger = logging.getLogger("orders")


def handler(event, context):
    logger.info("info line, below the level")
    logger.warning("warn line for %s", event.get("order"))
    print("printed line")
    return {"ok": True}
