// Module state is shared by the concurrent invocations of one Node sandbox:
// each waits (up to 5 s) until `event.together` are in flight at once.
let inFlight = 0;

exports.handler = async (event, context) => {
  inFlight += 1;
  let seen = inFlight;
  const deadline = Date.now() + 5000;
  while (inFlight < (event.together || 1) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  seen = Math.max(seen, inFlight);
  await new Promise((resolve) => setTimeout(resolve, 200));
  inFlight -= 1;
  return { seen_at_once: seen, request_id: context.awsRequestId, pid: process.pid };
};
