// The event says what to do: "sleep" (write, wait, write), "fail" (write,
// then throw), "http" (an HTTP-style response with its metadata prelude).
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  if (event.mode === "http") {
    const stream = awslambda.HttpResponseStream.from(responseStream, {
      statusCode: 201, headers: { "x-request": context.awsRequestId } });
    stream.write("http body");
    stream.end();
    return;
  }
  responseStream.setContentType("text/plain");
  responseStream.write("first ");
  if (event.mode === "fail") {
    throw new Error("boom mid-stream");
  }
  await new Promise((resolve) => setTimeout(resolve, (event.sleep || 0) * 1000));
  responseStream.write("second");
  responseStream.end();
});
