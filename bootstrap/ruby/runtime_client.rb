# Ruby runtime client: the process that runs a ruby3.3 function inside its sandbox.
#
# Owns: loading the handler named by _HANDLER ("file.method", or
# "file.Module::Class.method" for a class-level method; file relative to
# LAMBDA_TASK_ROOT, without .rb), calling it as AWS's Ruby runtime does
# (handler(event:, context:)), the GET next -> handler -> POST response | error
# loop against AWS_LAMBDA_RUNTIME_API, the context object, and error documents
# in the shape AWS's aws_lambda_ric gem sends them: {errorMessage, errorType,
# stackTrace} with errorType "Init<LoadError>", "Init<SyntaxError>" for a
# failed init and "Function<ZeroDivisionError>" for a handler's exception
# (docs/spec-additions.md section 9).
#
# Must not: need any gem beyond Ruby's default ones (json, net/http), put a
# timeout on GET next (the sandbox is frozen while it waits there), or keep
# more than one connection to the Runtime API. Protocol facts:
# /work/shared/spec/runtime-api.md sections 1, 2 and 4.

require 'json'
require 'net/http'

module RuntimeHostRuby
  API_PREFIX = '/2018-06-01/runtime'
  # aws_lambda_ric: exit(-4) after an init error, exit(-1) after a critical one.
  EXIT_INIT_ERROR = 252
  EXIT_CRITICAL = 255
  # The error classes aws_lambda_ric reports under their own name; others as UserException.
  NAMED_ERRORS = %w[ArgumentError NoMethodError Exception StandardError NameError LoadError
                    SystemExit SystemStackError].freeze

  # An error document as aws_lambda_ric's LambdaError#to_lambda_response builds it.
  def self.error_document(error, classification)
    trace = (error.backtrace_locations || []).first(100).map(&:to_s)
    { 'errorMessage' => error.message, 'errorType' => "#{classification}<#{error.class}>", 'stackTrace' => trace }
  end

  # The header value: Lambda's X-Amz-Function-Error-Type, as runtime_error_type picks it.
  def self.error_type_header(error, classification)
    NAMED_ERRORS.include?(error.class.to_s) ? "#{classification}<#{error.class}>" : 'Function<UserException>'
  end

  # The `context:` a handler gets: aws_lambda_ric's LambdaContext.
  class LambdaContext
    attr_reader :aws_request_id, :invoked_function_arn, :log_group_name, :log_stream_name,
                :function_name, :memory_limit_in_mb, :function_version, :identity, :client_context,
                :deadline_ms

    def initialize(headers)
      @aws_request_id = headers['lambda-runtime-aws-request-id']
      @invoked_function_arn = headers['lambda-runtime-invoked-function-arn']
      @log_group_name = ENV['AWS_LAMBDA_LOG_GROUP_NAME']
      @log_stream_name = ENV['AWS_LAMBDA_LOG_STREAM_NAME']
      @function_name = ENV['AWS_LAMBDA_FUNCTION_NAME']
      @memory_limit_in_mb = ENV['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']
      @function_version = ENV['AWS_LAMBDA_FUNCTION_VERSION']
      @identity = parse(headers['lambda-runtime-cognito-identity'])
      @client_context = parse(headers['lambda-runtime-client-context'])
      @deadline_ms = headers['lambda-runtime-deadline-ms'].to_i
    end

    def get_remaining_time_in_millis
      [@deadline_ms - (Process.clock_gettime(Process::CLOCK_REALTIME) * 1000).to_i, 0].max
    end

    private

    def parse(text)
      text.nil? || text.empty? ? nil : JSON.parse(text)
    rescue JSON::ParserError
      nil
    end
  end

  # The Runtime API on one kept-alive connection (no read timeout: GET next may wait hours).
  class RuntimeApi
    def initialize(address)
      host, port = address.split(':')
      @http = Net::HTTP.new(host, port.to_i)
      @http.read_timeout = nil
      @http.keep_alive_timeout = 24 * 3600
      @http.start
    end

    def next_invocation
      response = request(Net::HTTP::Get.new("#{API_PREFIX}/invocation/next"))
      raise "GET next answered #{response.code}: #{response.body}" unless response.code == '200'

      response
    end

    def post_response(request_id, body)
      post("#{API_PREFIX}/invocation/#{request_id}/response", body, 'application/json')
    end

    def post_error(request_id, document, error_type)
      post("#{API_PREFIX}/invocation/#{request_id}/error", JSON.generate(document), 'application/json',
           'Lambda-Runtime-Function-Error-Type' => error_type)
    end

    def post_init_error(document, error_type)
      post("#{API_PREFIX}/init/error", JSON.generate(document), 'application/json',
           'Lambda-Runtime-Function-Error-Type' => error_type)
    end

    private

    def post(path, body, content_type, headers = {})
      req = Net::HTTP::Post.new(path, { 'Content-Type' => content_type }.merge(headers))
      req.body = body
      request(req)
    end

    def request(req)
      @http.request(req)
    rescue EOFError, Errno::ECONNRESET, Errno::EPIPE
      # A kept-alive connection the host closed while idle: one more try on a new one.
      @http.finish if @http.started?
      @http.start
      @http.request(req)
    end
  end

  # "file.method" or "file.Module::Class.method", as Lambda's Ruby runtime splits it.
  class Handler
    attr_reader :file, :owner, :method_name

    def initialize(name)
      parts = name.to_s.split('.')
      unless parts.size.between?(2, 3) && parts.none?(&:empty?)
        raise ArgumentError, "Invalid handler #{parts}, must be of form FILENAME.METHOD or " \
                             'FILENAME.CLASS.METHOD where FILENAME corresponds with an existing Ruby ' \
                             'source file FILENAME.rb, CLASS is an optional module/class namespace and ' \
                             'METHOD is a callable method. If using CLASS, METHOD must be a class-level method.'
      end
      @file = parts.first
      @owner = parts.size == 3 ? parts[1] : nil
      @method_name = parts.last
    end

    def call(event, context)
      if @owner
        Kernel.const_get(@owner).send(@method_name, event: event, context: context)
      else
        TOPLEVEL_BINDING.receiver.__send__(@method_name, event: event, context: context)
      end
    end
  end

  def self.log_error(message, document)
    $stdout.puts("#{message}: #{JSON.generate(document)}")
  end

  # The event as aws_lambda_ric's Marshaller reads it: JSON, or the raw string when it is not.
  def self.event_of(body)
    return nil if body.nil? || body.empty?

    JSON.parse(body)
  rescue JSON::ParserError
    body
  end

  def self.main
    $stdout.sync = true
    $stderr.sync = true
    task_root = ENV['LAMBDA_TASK_ROOT'] || '/var/task'
    $LOAD_PATH.unshift(task_root) unless $LOAD_PATH.include?(task_root)
    api = RuntimeApi.new(ENV.fetch('AWS_LAMBDA_RUNTIME_API'))
    begin
      handler = Handler.new(ENV['_HANDLER'])
      require File.join(task_root, handler.file)
    rescue Exception => e # rubocop:disable Lint/RescueException -- LoadError, SyntaxError: init errors all
      document = error_document(e, 'Init')
      log_error("Init error when loading handler #{ENV['_HANDLER']}", document)
      api.post_init_error(document, error_type_header(e, 'Init'))
      exit!(EXIT_INIT_ERROR)
    end
    loop do
      invocation = api.next_invocation
      request_id = invocation['lambda-runtime-aws-request-id']
      ENV['_X_AMZN_TRACE_ID'] = invocation['lambda-runtime-trace-id'] if invocation['lambda-runtime-trace-id']
      context = LambdaContext.new(invocation)
      begin
        result = handler.call(event_of(invocation.body), context)
        api.post_response(request_id, result.to_json)
      rescue NoMethodError, NameError => e
        # aws_lambda_ric: a handler that is not there (or calls one that is not) ends the sandbox.
        document = error_document(e, 'Function')
        log_error('Critical exception from handler', document)
        api.post_error(request_id, document, error_type_header(e, 'Function'))
        exit!(EXIT_CRITICAL)
      rescue StandardError => e
        document = error_document(e, 'Function')
        log_error('Error raised from handler method', document)
        api.post_error(request_id, document, error_type_header(e, 'Function'))
      rescue Exception => e # rubocop:disable Lint/RescueException -- as aws_lambda_ric: critical
        document = error_document(e, 'Function')
        log_error('Critical exception from handler', document)
        api.post_error(request_id, document, error_type_header(e, 'Function'))
        exit!(EXIT_CRITICAL)
      end
    end
  end
end

RuntimeHostRuby.main if $PROGRAM_NAME == __FILE__ # (stem.rb requires this file, then calls main itself)
