"""Allocates memory 16 MB at a time, touching every page, until it is killed."""
CHUNKS = []


def handler(event, context):
    while True:
        CHUNKS.append(bytearray(16 * 1024 * 1024))
