"""The floor: a bare aiohttp server answering the same request on loopback,
with the same framework and loop the host uses, doing no work."""
import sys

from aiohttp import web


async def echo(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(body=b'{"message": "hello from python"}', content_type="application/json")


app = web.Application()
app.router.add_post("/2015-03-31/functions/{name}/invocations", echo)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
