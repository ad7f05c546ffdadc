// The load run's function (tests/load.py), in Node: logs the event's nonce so
// a run can count how many times each event ran, then answers or fails on purpose.
exports.handler = async (event, context) => {
  console.log(`LOADNONCE ${event.n}`);
  if (event.fail) throw new Error(`failing on purpose ${event.n}`);
  return { n: event.n, rid: context.awsRequestId };
};
