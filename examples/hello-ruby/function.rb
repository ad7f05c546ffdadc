# hello-ruby: the smallest useful ruby3.3 function.
#
# Shows the three things a first invoke should show: configuration through the
# environment (GREETING), warm reuse (a top-level counter that keeps counting
# while the same sandbox serves more events) and a log line per invocation.
# Lambda's Ruby runtime calls the handler with the keywords event: and context:.

GREETING = ENV.fetch('GREETING', 'hello')

# Lives as long as the sandbox: 1 on a cold start, then 2, 3, ...
$invocation_count = 0

def handler(event:, context:)
  $invocation_count += 1
  puts "hello-ruby: invocation #{$invocation_count} in this sandbox, request #{context.aws_request_id}"
  {
    message: "#{GREETING} from ruby",
    event: event,
    invocation: $invocation_count,
    request_id: context.aws_request_id
  }
end
