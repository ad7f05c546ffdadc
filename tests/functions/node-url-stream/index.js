// awslambda.HttpResponseStream.from: the JSON prelude and its 8 NUL bytes go
// out before the first write; the function URL turns them into the status and
// headers. "/fail" throws before writing anything (the caller gets 502).
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  const stream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 201,
    headers: { "content-type": "text/plain; charset=utf-8", "x-stream": "yes" },
    cookies: ["streamed=1; Path=/"],
  });
  if (event.rawPath === "/fail") {
    throw new Error("failing before the first byte");
  }
  stream.write(`first ${event.requestContext.http.method} ${event.rawPath}\n`);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  stream.write("second\n");
  stream.end();
});
