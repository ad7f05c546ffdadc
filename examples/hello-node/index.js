// hello-node: the smallest useful nodejs18.x function.
//
// Shows the three things a first invoke should show: configuration through the
// environment (GREETING), warm reuse (a module-level counter that keeps counting
// while the same sandbox serves more events) and a log line per invocation.

const GREETING = process.env.GREETING || 'hello';

// Module state lives as long as the sandbox: 1 on a cold start, then 2, 3, ...
let invocationCount = 0;

exports.handler = async (event, context) => {
  invocationCount += 1;
  console.log(`hello-node: invocation ${invocationCount} in this sandbox, request ${context.awsRequestId}`);
  return {
    message: `${GREETING} from node`,
    event,
    invocation: invocationCount,
    request_id: context.awsRequestId,
  };
};
