/*
 * Node.js runtime client: the process that runs a nodejs18.x function inside its sandbox.
 *
 * Owns: loading the handler named by _HANDLER ("file.export", file relative to
 * LAMBDA_TASK_ROOT, .js / .cjs / .mjs), the GET next -> handler -> POST
 * response | error loop against AWS_LAMBDA_RUNTIME_API, the context object,
 * the async / callback / context.succeed programming models, error documents in
 * the shape AWS's aws-lambda-ric sends ({errorType, errorMessage, trace}), and
 * the console log line format.
 *
 * Must not: require anything outside Node's standard library, put a timeout on
 * GET next (the sandbox is frozen while it waits there), or use more than one
 * socket (a keep-alive Agent with maxSockets 1 carries every call).
 * Protocol facts: /work/shared/spec/runtime-api.md sections 1, 4 and 10.
 */

'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const util = require('util');
const { pathToFileURL } = require('url');

const API_PREFIX = '/2018-06-01/runtime';

// Node lower-cases incoming header names.
const HEADER = {
  requestId: 'lambda-runtime-aws-request-id',
  deadlineMs: 'lambda-runtime-deadline-ms',
  functionArn: 'lambda-runtime-invoked-function-arn',
  traceId: 'lambda-runtime-trace-id',
  clientContext: 'lambda-runtime-client-context',
  cognitoIdentity: 'lambda-runtime-cognito-identity',
};
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const TRACE_ID_ENV = '_X_AMZN_TRACE_ID';

// Exit statuses aws-lambda-ric uses after reporting a fatal error.
const EXIT_STATUS_UNCAUGHT_EXCEPTION = 129;
const EXIT_STATUS_UNHANDLED_REJECTION = 128;

// Module extensions tried, in order, for the file part of the handler.
const MODULE_EXTENSIONS = ['.js', '.cjs', '.mjs'];

// ---------------------------------------------------------------------------
// Error types the runtime reports itself; each class's name is its errorType.

class ImportModuleError extends Error {}
class HandlerNotFound extends Error {}
class MalformedHandlerName extends Error {}
class UserCodeSyntaxError extends Error {}
class UnhandledPromiseRejection extends Error {}
class NodeJsExit extends Error {
  constructor() {
    super(
      'The Node.js event loop emptied before the async handler settled its promise ' +
        '(a Promise that is never resolved or rejected).',
    );
  }
}
for (const errorClass of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  UnhandledPromiseRejection,
  NodeJsExit,
]) {
  errorClass.prototype.name = `Runtime.${errorClass.name}`;
}

/** The document posted to /error and /init/error, as aws-lambda-ric builds it. */
function toErrorDocument(error) {
  try {
    if (util.types.isNativeError(error) || looksLikeError(error)) {
      return {
        errorType: error.name,
        errorMessage: error.message,
        trace: error.stack.split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: String(error), trace: [] };
  } catch (_) {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

function looksLikeError(value) {
  return Boolean(
    value &&
      typeof value.name === 'string' &&
      typeof value.message === 'string' &&
      typeof value.stack === 'string',
  );
}

// ---------------------------------------------------------------------------
// Logging: every console method writes one line
// "<ISO time>\t<request id>\t<LEVEL>\t<message>" to stdout, as in AWS (the
// request id reads "undefined" until the first event arrives, as in AWS).

let currentRequestId;

const LOG_LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };

function patchConsole() {
  const configured = (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
  const minimumPriority = LOG_LEVELS[configured] || LOG_LEVELS.TRACE;
  const logger = (level) => {
    if (LOG_LEVELS[level] < minimumPriority) {
      return () => {};
    }
    return (...args) => {
      const line = `${new Date().toISOString()}\t${currentRequestId}\t${level}\t${util.format(...args)}\n`;
      process.stdout.write(line);
    };
  };
  console.trace = logger('TRACE');
  console.debug = logger('DEBUG');
  console.info = logger('INFO');
  console.log = console.info;
  console.warn = logger('WARN');
  console.error = logger('ERROR');
  console.fatal = logger('FATAL');
}

/** The "Invoke Error" line aws-lambda-ric prints before posting an error. */
function logError(label, error) {
  let detail;
  try {
    detail = JSON.stringify(error, (_key, value) => {
      if (value instanceof Error) {
        return Object.assign(
          { errorType: value.name, errorMessage: value.message, code: value.code },
          value,
          typeof value.stack === 'string' ? { stack: value.stack.split('\n') } : {},
        );
      }
      return value;
    });
  } catch (_) {
    detail = JSON.stringify(toErrorDocument(error));
  }
  console.error(label, `\t${detail}`);
}

// ---------------------------------------------------------------------------
// Runtime API client

class RuntimeApiClient {
  constructor(address) {
    const colon = address.lastIndexOf(':');
    // "[::1]:9001" names an IPv6 host; http wants it without brackets.
    this.hostname = address.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
    this.port = Number(address.slice(colon + 1));
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  async nextInvocation() {
    const answer = await this.request('GET', `${API_PREFIX}/invocation/next`);
    if (answer.status !== 200) {
      throw new Error(`GET ${API_PREFIX}/invocation/next answered HTTP ${answer.status}: ${answer.body}`);
    }
    if (!answer.headers[HEADER.requestId]) {
      throw new Error(`GET ${API_PREFIX}/invocation/next answered without a request id header`);
    }
    return answer;
  }

  postResponse(requestId, bodyText) {
    return this.post(`/invocation/${encodeURIComponent(requestId)}/response`, bodyText);
  }

  postInvocationError(requestId, error) {
    const doc = toErrorDocument(error);
    return this.post(`/invocation/${encodeURIComponent(requestId)}/error`, JSON.stringify(doc));
  }

  postInitError(error) {
    const doc = toErrorDocument(error);
    return this.post('/init/error', JSON.stringify(doc), {
      [ERROR_TYPE_HEADER]: headerSafe(doc.errorType),
    });
  }

  async post(apiPath, bodyText, extraHeaders = {}) {
    const body = Buffer.from(bodyText, 'utf8');
    const headers = Object.assign(
      { 'Content-Type': 'application/json', 'Content-Length': body.length },
      extraHeaders,
    );
    const answer = await this.request('POST', API_PREFIX + apiPath, body, headers);
    if (answer.status < 200 || answer.status > 299) {
      // aws-lambda-ric ignores the status of its POSTs and carries on; say
      // so on stderr, where a developer will look.
      process.stderr.write(
        `runtime.js: POST ${API_PREFIX}${apiPath} answered HTTP ${answer.status}: ${answer.body}\n`,
      );
    }
    return answer;
  }

  request(method, apiPath, body, headers, isRetry = false) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { hostname: this.hostname, port: this.port, path: apiPath, method, headers, agent: this.agent },
        (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('end', () =>
            resolve({
              status: res.statusCode,
              headers: res.headers,
              body: Buffer.concat(chunks).toString('utf8'),
            }),
          );
          res.on('error', reject);
        },
      );
      req.on('error', (err) => {
        // A kept-alive socket the host closed while idle fails on first use;
        // one retry on a fresh socket covers that.
        if (!isRetry && req.reusedSocket && err.code === 'ECONNRESET') {
          resolve(this.request(method, apiPath, body, headers, true));
        } else {
          reject(err);
        }
      });
      req.end(body);
    });
  }
}

function headerSafe(value) {
  return String(value).replace(/[^\x20-\x7e]/g, '?');
}

// ---------------------------------------------------------------------------
// Loading the handler

async function loadHandler(taskRoot, fullHandler) {
  if (!fullHandler) {
    throw new MalformedHandlerName('Bad handler');
  }
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName(
      `'${fullHandler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  // "dir/app.handler": module root "dir/", module "app", export path "handler".
  const moduleAndExport = path.basename(fullHandler);
  const moduleRoot = fullHandler.slice(0, fullHandler.length - moduleAndExport.length);
  const match = moduleAndExport.match(/^([^.]*)\.(.*)$/);
  if (!match) {
    throw new MalformedHandlerName('Bad handler');
  }
  const [, moduleName, exportPath] = match;

  const userModule = await loadModule(taskRoot, moduleRoot, moduleName);
  const handler = exportPath.split('.').reduce((object, key) => object && object[key], userModule);
  if (!handler) {
    throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  }
  if (typeof handler !== 'function') {
    throw new HandlerNotFound(`${fullHandler} is not a function`);
  }
  return handler;
}

async function loadModule(taskRoot, moduleRoot, moduleName) {
  const basePath = path.resolve(taskRoot, moduleRoot, moduleName);
  try {
    for (const extension of MODULE_EXTENSIONS) {
      const file = basePath + extension;
      if (!fs.existsSync(file)) {
        continue;
      }
      if (extension === '.mjs') {
        return await import(pathToFileURL(file).href);
      }
      try {
        return require(file);
      } catch (err) {
        // A .js file in a "type": "module" package is an ES module.
        if (err.code === 'ERR_REQUIRE_ESM' || err.code === 'ERR_REQUIRE_ASYNC_MODULE') {
          return await import(pathToFileURL(file).href);
        }
        throw err;
      }
    }
    // As aws-lambda-ric: fall back to Node's own resolution (a package in
    // node_modules, a folder with index.js). When that fails too, its error
    // is the familiar "Cannot find module 'app'".
    const resolved = require.resolve(moduleName, {
      paths: [taskRoot, path.resolve(taskRoot, moduleRoot)],
    });
    return require(resolved);
  } catch (err) {
    if (err instanceof SyntaxError) {
      throw new UserCodeSyntaxError(err);
    }
    if (err && err.code === 'MODULE_NOT_FOUND') {
      throw new ImportModuleError(err);
    }
    throw err;
  }
}

function isAsyncFunction(fn) {
  return fn.constructor && fn.constructor.name === 'AsyncFunction';
}

function isPromise(value) {
  return Boolean(value && typeof value.then === 'function');
}

// ---------------------------------------------------------------------------
// The invoke loop

/**
 * 'beforeExit' fires when the event loop has nothing left to do. During an
 * invocation that means the handler will never finish on its own (or, for a
 * callback with callbackWaitsForEmptyEventLoop, that it may now be answered).
 * One action at a time; it is cleared once it has run.
 */
let beforeExitAction = null;
process.on('beforeExit', () => {
  const action = beforeExitAction;
  beforeExitAction = null;
  if (action) {
    action();
  }
});

/** One event: its result is reported exactly once, then the loop moves on. */
class Invocation {
  constructor(client, requestId, onReported) {
    this.client = client;
    this.requestId = requestId;
    this.onReported = onReported;
    this.reported = false;
    this.waitForEmptyEventLoop = true;
  }

  succeed(result) {
    if (this.reported) {
      return;
    }
    this.reported = true;
    beforeExitAction = null;
    let bodyText;
    try {
      bodyText = JSON.stringify(result === undefined ? null : result);
    } catch (_) {
      // A BigInt or a cycle: aws-lambda-ric fails the invocation with this text.
      this.reported = false;
      this.fail(new Error('Unable to stringify response body'));
      return;
    }
    if (bodyText === undefined) {
      bodyText = 'null'; // a function or a symbol has no JSON form
    }
    this.client.postResponse(this.requestId, bodyText).then(this.onReported, fatal);
  }

  fail(error) {
    if (this.reported) {
      return;
    }
    this.reported = true;
    beforeExitAction = null;
    const reported = error === undefined || error === null ? 'handled' : error;
    logError('Invoke Error', reported);
    this.client.postInvocationError(this.requestId, reported).then(this.onReported, fatal);
  }

  /** The node-style callback(err, result) handed to the handler. */
  callback(error, result) {
    if (this.reported) {
      return;
    }
    if (error !== undefined && error !== null) {
      this.fail(error);
    } else if (!this.waitForEmptyEventLoop) {
      this.succeed(result);
    } else {
      // Answer only once the handler's timers and sockets have drained.
      beforeExitAction = () => setImmediate(() => this.succeed(result));
    }
  }
}

function parseJsonHeader(text, name) {
  if (text === undefined) {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

function buildContext(headers, invocation) {
  const deadlineMs = Number(headers[HEADER.deadlineMs]) || 0;
  const once = (fn) => (...args) => {
    if (!invocation.reported) {
      fn(...args);
    }
  };
  return {
    get callbackWaitsForEmptyEventLoop() {
      return invocation.waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      invocation.waitForEmptyEventLoop = value;
    },
    succeed: once((result) => invocation.succeed(result)),
    fail: once((error) => invocation.fail(error)),
    done: once((error, result) =>
      error !== undefined && error !== null ? invocation.fail(error) : invocation.succeed(result),
    ),
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    // A string, as in AWS.
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(headers[HEADER.clientContext], 'ClientContext'),
    identity: parseJsonHeader(headers[HEADER.cognitoIdentity], 'CognitoIdentity'),
    invokedFunctionArn: headers[HEADER.functionArn],
    awsRequestId: headers[HEADER.requestId],
    getRemainingTimeInMillis() {
      return deadlineMs - Date.now();
    },
  };
}

let client;
let handler;
let currentInvocation = null;

function scheduleNextInvocation() {
  // setImmediate: start the next GET from a clean stack, after any I/O
  // callbacks of the invocation that just ended.
  setImmediate(() => handleNextInvocation().catch(fatal));
}

async function handleNextInvocation() {
  const answer = await client.nextInvocation();
  const requestId = answer.headers[HEADER.requestId];
  currentRequestId = requestId;
  const traceId = answer.headers[HEADER.traceId];
  if (traceId) {
    process.env[TRACE_ID_ENV] = traceId;
  } else {
    delete process.env[TRACE_ID_ENV];
  }

  const invocation = new Invocation(client, requestId, scheduleNextInvocation);
  currentInvocation = invocation;
  const handlerIsAsync = isAsyncFunction(handler);
  beforeExitAction = () => {
    if (handlerIsAsync) {
      // The promise can no longer settle: nothing is left to settle it.
      invocation.fail(new NodeJsExit());
    } else {
      // A callback handler that never called back: AWS answers null.
      invocation.succeed(null);
    }
  };

  try {
    const context = buildContext(answer.headers, invocation);
    const event = JSON.parse(answer.body);
    const result = handler(event, context, (error, value) => invocation.callback(error, value));
    if (isPromise(result)) {
      result.then(
        (value) => invocation.succeed(value),
        (error) => invocation.fail(error),
      );
    }
  } catch (err) {
    invocation.callback(err);
  }
}

/** Report an error that escaped the handler (or the runtime), then exit. */
function reportFatal(error, exitStatus) {
  const exit = () => process.exit(exitStatus);
  const invocation = currentInvocation;
  let reporting;
  if (invocation === null) {
    // Before the first event: the sandbox's init failed.
    reporting = client ? client.postInitError(error) : Promise.resolve();
  } else if (!invocation.reported) {
    invocation.reported = true;
    reporting = client.postInvocationError(invocation.requestId, error);
  } else {
    // Between events; the host sees the exit.
    reporting = Promise.resolve();
  }
  reporting.then(exit, (postError) => {
    process.stderr.write(`runtime.js: could not report the error: ${postError}\n`);
    exit();
  });
}

function fatal(error) {
  logError('Unexpected Top Level Error', error);
  process.exit(EXIT_STATUS_UNCAUGHT_EXCEPTION);
}

async function main() {
  patchConsole();
  const address = process.env.AWS_LAMBDA_RUNTIME_API;
  if (!address) {
    process.stderr.write('runtime.js: AWS_LAMBDA_RUNTIME_API is not set; this program runs inside a sandbox\n');
    process.exit(1);
  }
  client = new RuntimeApiClient(address);

  process.on('uncaughtException', (error) => {
    logError('Uncaught Exception', error);
    reportFatal(error, EXIT_STATUS_UNCAUGHT_EXCEPTION);
  });
  process.on('unhandledRejection', (reason) => {
    const error = new UnhandledPromiseRejection(reason);
    logError('Unhandled Promise Rejection', error);
    reportFatal(error, EXIT_STATUS_UNHANDLED_REJECTION);
  });

  const taskRoot = process.env.LAMBDA_TASK_ROOT || '/var/task';
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER);
  } catch (error) {
    // The label AWS prints for a failed init, e.g. a missing module.
    logError('Uncaught Exception', error);
    reportFatal(error, EXIT_STATUS_UNCAUGHT_EXCEPTION);
    return;
  }
  scheduleNextInvocation();
}

main();
