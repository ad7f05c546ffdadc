# A stem cell: a sandbox started ahead of need, before it knows its function.
# Ruby, json and net/http are loaded now, off any invocation's path. Then it
# asks the host (GET /runtime-host/stem, a long poll on the Runtime API's
# address) which function it becomes; the answer is the function's whole
# environment, which replaces this process's, and the runtime client's main
# runs as if /var/runtime/bootstrap had started it.
require 'json'
require 'net/http'
require_relative 'runtime_client'

host, port = ENV.fetch('AWS_LAMBDA_RUNTIME_API').split(':')
http = Net::HTTP.new(host, port.to_i)
http.read_timeout = nil # the host answers when it needs us
response = http.request(Net::HTTP::Get.new('/runtime-host/stem'))
unless response.code == '200'
  warn "stem: the host answered #{response.code}: #{response.body.to_s[0, 200]}"
  exit!(1)
end
spec = JSON.parse(response.body)
http.finish if http.started?
if spec['output']
  # The host reads the runtime's stdout and stderr from this FIFO directly (not through Docker).
  fifo = File.open(spec['output'], 'w')
  $stdout.reopen(fifo)
  $stderr.reopen(fifo)
  fifo.close
end
ENV.replace(spec['env'])
Dir.chdir('/var/task')
# RUBYLIB and GEM_PATH are read when Ruby starts: take the function's now.
ENV['RUBYLIB'].to_s.split(':').reverse_each { |dir| $LOAD_PATH.unshift(dir) unless $LOAD_PATH.include?(dir) }
Gem.paths = ENV if defined?(Gem)
RuntimeHostRuby.main
