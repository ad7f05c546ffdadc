// A stem cell: a sandbox started ahead of need, before it knows its function.
// It asks the host (GET /runtime-host/stem, a long poll on the Runtime API's
// address) which function it becomes, takes that function's environment and
// becomes its runtime in this same process (Node 18 has no exec), so that on
// a cold start only the runtime's own init is left to do.
'use strict';
const fs = require('fs');
const http = require('http');

// The host reads the runtime's stdout and stderr from this FIFO directly (not
// through Docker). Node cannot dup2, so both streams' write() go there, in
// order and synchronously, as they do on a pipe.
function pointOutputAt(path) {
  const fd = fs.openSync(path, fs.constants.O_WRONLY);
  for (const stream of [process.stdout, process.stderr]) {
    stream.write = (chunk, encoding, callback) => {
      if (typeof encoding === 'function') [callback, encoding] = [encoding, undefined];
      fs.writeSync(fd, typeof chunk === 'string' ? Buffer.from(chunk, encoding || 'utf8') : chunk);
      if (callback) process.nextTick(callback);
      return true;
    };
  }
}

const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(':');
http.get({ host, port: Number(port), path: '/runtime-host/stem' }, (res) => {
  const chunks = [];
  res.on('data', (c) => chunks.push(c));
  res.on('end', () => {
    if (res.statusCode !== 200) {
      process.stderr.write(`stem: the host answered ${res.statusCode}\n`);
      process.exit(1);
    }
    const spec = JSON.parse(Buffer.concat(chunks).toString());
    if (spec.output) pointOutputAt(spec.output);
    for (const key of Object.keys(process.env)) delete process.env[key];
    Object.assign(process.env, spec.env);
    // NODE_PATH (the layers' node_modules) is read when Node starts: read it again.
    require('module').Module._initPaths();
    process.chdir('/var/task');
    require('/var/runtime/runtime.js');
  });
}).on('error', (err) => {
  process.stderr.write(`stem: ${err.message}\n`);
  process.exit(1);
});
