/*
 * Node.js runtime client: the process that runs a nodejs18.x, 20.x, 22.x or 24.x function inside its sandbox.
 *
 * Owns: loading the handler named by _HANDLER ("file.export", file relative to
 * LAMBDA_TASK_ROOT, .js / .cjs / .mjs), the GET next -> handler -> POST
 * response | error loop against AWS_LAMBDA_RUNTIME_API, the context object,
 * the async / callback / context.succeed programming models, response
 * streaming (the global `awslambda`: streamifyResponse, HttpResponseStream),
 * error documents in the shape AWS's aws-lambda-ric sends ({errorType,
 * errorMessage, trace}), and the console log line format: text, or one JSON
 * object a line when AWS_LAMBDA_LOG_FORMAT is JSON (aws-lambda-ric's LogPatch.js).
 *
 * With AWS_LAMBDA_MAX_CONCURRENCY = N > 1 (Lambda Managed Instances) it runs
 * N GET next loops in this one event loop, each on its own keep-alive socket
 * and answering its own request ids, so handlers run concurrently and share
 * module state, as in one worker thread of AWS's Managed Instances runtime:
 * the request id and trace id live in an AsyncLocalStorage
 * (awslambda.InvokeStore), not in process-wide state; logs are JSON lines;
 * callback handlers are refused at init. Unset or 1: exactly as without it
 * (docs/spec-additions.md section 5).
 *
 * Must not: require anything outside Node's standard library, put a timeout on
 * GET next (the sandbox is frozen while it waits there), or use more than one
 * socket per loop (a keep-alive Agent with maxSockets 1 carries every call of
 * a loop). Protocol facts: /work/shared/spec/runtime-api.md sections 1, 2, 4 and 10.
 */

'use strict';

const { AsyncLocalStorage } = require('async_hooks');
const fs = require('fs');
const http = require('http');
const path = require('path');
const { Writable, finished } = require('stream');
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
const ERROR_BODY_TRAILER = 'Lambda-Runtime-Function-Error-Body';
const RESPONSE_MODE_HEADER = 'Lambda-Runtime-Function-Response-Mode';
const TRACE_ID_ENV = '_X_AMZN_TRACE_ID';
const TENANT_ID_HEADER = 'lambda-runtime-aws-tenant-id';

/** N from AWS_LAMBDA_MAX_CONCURRENCY: the GET next loops to run; 1 when unset, not a number, or below 2. */
function maxConcurrency(text) {
  if (text === undefined) {
    return 1;
  }
  const value = Number.parseInt(text, 10);
  if (Number.isNaN(value)) {
    process.stderr.write(
      `runtime.js: AWS_LAMBDA_MAX_CONCURRENCY=${text} is not a number; serving one invocation at a time\n`,
    );
    return 1;
  }
  return Math.max(value, 1);
}

// Read once: the variable does not change while the process runs (the stem
// cell requires this file only after it has taken the function's environment).
const MAX_CONCURRENCY = maxConcurrency(process.env.AWS_LAMBDA_MAX_CONCURRENCY);
const CONCURRENT = MAX_CONCURRENCY > 1;

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
class MalformedStreamingHandler extends Error {}
class InvalidStreamingOperation extends Error {}
class CallbackHandlerDeprecated extends Error {}
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
  MalformedStreamingHandler,
  InvalidStreamingOperation,
  CallbackHandlerDeprecated,
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
// The per-invocation context of concurrent loops, as the @aws/lambda-invoke-store
// package defines it (InvokeStoreMulti): an AsyncLocalStorage whose store holds
// the request id, X-Ray trace id and tenant id under registered symbols, plus
// whatever the function's code sets. aws-lambda-ric puts it on
// globalThis.awslambda.InvokeStore, where that package (and the AWS SDK's
// trace-id propagation through it) finds it.

const INVOKE_STORE_KEYS = Object.freeze({
  REQUEST_ID: Symbol.for('_AWS_LAMBDA_REQUEST_ID'),
  X_RAY_TRACE_ID: Symbol.for('_AWS_LAMBDA_X_RAY_TRACE_ID'),
  TENANT_ID: Symbol.for('_AWS_LAMBDA_TENANT_ID'),
});
// This runtime's own entry in a store: the invocation, for a crash's report.
const INVOCATION_KEY = Symbol('runtime.js invocation');

class InvokeStore {
  #storage = new AsyncLocalStorage();

  get PROTECTED_KEYS() {
    return INVOKE_STORE_KEYS;
  }

  getContext() {
    return this.#storage.getStore();
  }

  hasContext() {
    return this.#storage.getStore() !== undefined;
  }

  get(key) {
    return this.#storage.getStore()?.[key];
  }

  set(key, value) {
    if (Object.values(INVOKE_STORE_KEYS).includes(key)) {
      throw new Error(`Cannot modify protected Lambda context field: ${String(key)}`);
    }
    const store = this.#storage.getStore();
    if (!store) {
      throw new Error('No context available');
    }
    store[key] = value;
  }

  run(context, fn) {
    return this.#storage.run(context, fn);
  }

  getRequestId() {
    return this.get(INVOKE_STORE_KEYS.REQUEST_ID) ?? '-';
  }

  getXRayTraceId() {
    return this.get(INVOKE_STORE_KEYS.X_RAY_TRACE_ID);
  }

  getTenantId() {
    return this.get(INVOKE_STORE_KEYS.TENANT_ID);
  }
}

const invokeStore = new InvokeStore();

// ---------------------------------------------------------------------------
// Logging: every console method writes one line to stdout, as in AWS:
// "<ISO time>\t<request id>\t<LEVEL>\t<message>" (the request id reads
// "undefined" until the first event arrives), or with AWS_LAMBDA_LOG_FORMAT
// JSON {"timestamp", "level", "requestId", "message"} (docs/spec-additions.md
// section 4). Levels below AWS_LAMBDA_LOG_LEVEL write nothing. With
// concurrent loops the lines are always JSON and the request id is the
// invocation's own, read from the InvokeStore ("-" outside any invocation),
// as aws-lambda-ric's logger for Managed Instances writes them.

let currentRequestId;

/** The request id a log line carries. */
function logRequestId() {
  return CONCURRENT ? invokeStore.getRequestId() : currentRequestId;
}

const LOG_LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
const JSON_LOG_FORMAT = 'JSON';

function jsonLogs() {
  return CONCURRENT || (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === JSON_LOG_FORMAT;
}

/** An Error in a JSON log line, as aws-lambda-ric serializes it. */
function jsonErrorReplacer(_key, value) {
  if (value instanceof Error) {
    return Object.assign(
      {
        errorType: value?.constructor?.name ?? 'UnknownError',
        errorMessage: value.message,
        stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
      },
      value,
    );
  }
  return value;
}

/** One console call as aws-lambda-ric's JSON line: a lone argument is kept as a value. */
function jsonLogLine(level, args) {
  const line = { timestamp: new Date().toISOString(), level, requestId: logRequestId() };
  if (CONCURRENT) {
    const tenantId = invokeStore.getTenantId();
    if (tenantId) {
      line.tenantId = tenantId;
    }
  }
  if (args.length === 1) {
    line.message = args[0];
    try {
      return JSON.stringify(line, jsonErrorReplacer);
    } catch (_) {
      line.message = util.format(line.message); // a cycle or a BigInt
      return JSON.stringify(line);
    }
  }
  line.message = util.format(...args);
  const error = args.find((arg) => arg instanceof Error);
  if (error) {
    line.errorType = error?.constructor?.name ?? 'UnknownError';
    line.errorMessage = error.message;
    line.stackTrace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
  }
  return JSON.stringify(line);
}

function patchConsole() {
  const configured = (process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase();
  const minimumPriority = LOG_LEVELS[configured] || LOG_LEVELS.TRACE;
  const json = jsonLogs();
  const logger = (level) => {
    if (LOG_LEVELS[level] < minimumPriority) {
      return () => {};
    }
    if (json) {
      return (...args) => {
        process.stdout.write(jsonLogLine(level, args).replace(/\n/g, '\r') + '\n');
      };
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

/** The "Invoke Error" line aws-lambda-ric prints before posting an error
 * (in JSON format: the error alone, as an Error, without the label). */
function logError(label, error) {
  if (jsonLogs()) {
    console.error(error instanceof Error ? error : new Error(error));
    return;
  }
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

  /**
   * Starts POST /invocation/{id}/response in streaming mode (spec section 2.1)
   * and returns the request, to be written and ended by the caller, with a
   * promise of the host's answer. Node sends the request line and headers
   * with the first write or the end, not here.
   *
   * No retry on a reset keep-alive socket, unlike request(): the body is
   * streamed, not kept, so it could not be sent again. A lost connection
   * fails the invocation with `fatal`, as a failed buffered POST does.
   */
  openResponseStream(requestId, contentType) {
    const apiPath = `${API_PREFIX}/invocation/${encodeURIComponent(requestId)}/response`;
    const headers = {
      [RESPONSE_MODE_HEADER]: 'streaming',
      'Transfer-Encoding': 'chunked',
      // aws-lambda-ric declares both trailers up front, whether or not the
      // invocation fails: a trailer may only be sent if declared.
      Trailer: `${ERROR_TYPE_HEADER}, ${ERROR_BODY_TRAILER}`,
      'Content-Type': contentType,
    };
    let request;
    const answer = new Promise((resolve, reject) => {
      request = http.request(
        { hostname: this.hostname, port: this.port, path: apiPath, method: 'POST', headers, agent: this.agent },
        (res) => {
          const chunks = [];
          res.on('data', (chunk) => chunks.push(chunk));
          res.on('end', () =>
            resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', reject);
        },
      );
      request.on('error', reject);
    }).then((result) => {
      if (result.status < 200 || result.status > 299) {
        // As for the buffered POSTs: aws-lambda-ric does not look at the status.
        process.stderr.write(`runtime.js: POST ${apiPath} answered HTTP ${result.status}: ${result.body}\n`);
      }
      return result;
    });
    return { request, answer };
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
      // As aws-lambda-ric: .mjs, and .js under a package.json saying
      // "type": "module", are ES modules, loaded with import(); Node 22's
      // require() of an ES module would work too, with an experimental warning.
      if (extension === '.mjs' || (extension === '.js' && inModulePackage(file))) {
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
    if (err && (err.code === 'MODULE_NOT_FOUND' || err.code === 'ERR_MODULE_NOT_FOUND')) {
      throw new ImportModuleError(err);
    }
    throw err;
  }
}

// Whether the nearest package.json above `file` (up to /) says "type": "module".
function inModulePackage(file) {
  for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
    const manifest = path.join(dir, 'package.json');
    if (fs.existsSync(manifest)) {
      try {
        return JSON.parse(fs.readFileSync(manifest, 'utf8')).type === 'module';
      } catch (err) {
        return false; // Node itself refuses a broken package.json when it loads the file
      }
    }
    if (dir === path.dirname(dir)) {
      return false;
    }
  }
}

// What awslambda.streamifyResponse marks a handler with (aws-lambda-ric
// UserFunction.js). Registered symbols (Symbol.for), so a handler marked by
// code other than the global (a library's own streamifyResponse) counts too.
const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';

/**
 * The global `awslambda` aws-lambda-ric installs before it loads the
 * handler's module, which calls awslambda.streamifyResponse at load time.
 * AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA turns it off there as here.
 */
function installGlobalAwsLambda() {
  const off = process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') {
    return;
  }
  globalThis.awslambda = {
    ...(CONCURRENT ? { InvokeStore: invokeStore } : {}),
    streamifyResponse(handler, options) {
      handler[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof (options && options.highWaterMark) === 'number') {
        handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark);
      }
      return handler;
    },
    HttpResponseStream,
  };
}

/** How the handler is called: {streaming, highWaterMark}, read once at init. */
function handlerMetadata(fn) {
  const mark = fn[HANDLER_STREAMING];
  let streaming = false;
  if (mark !== undefined && mark !== null && mark !== false) {
    if (mark !== STREAM_RESPONSE) {
      throw new MalformedStreamingHandler('Only response streaming is supported.');
    }
    streaming = true;
  }
  const highWaterMark = parseInt(fn[HANDLER_HIGHWATERMARK]);
  return { streaming, highWaterMark: isNaN(highWaterMark) ? undefined : highWaterMark };
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

  /** An uncaught exception or unhandled rejection during the invocation. */
  reportCrash(error) {
    return this.client.postInvocationError(this.requestId, error);
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

// ---------------------------------------------------------------------------
// Response streaming (spec section 2), as aws-lambda-ric's ResponseStream.js,
// HttpResponseStream.js, StreamingContext.js and Runtime.js do it.

const DEFAULT_STREAM_CONTENT_TYPE = 'application/octet-stream';
const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const PRELUDE_DELIMITER_BYTES = 8;

/**
 * awslambda.HttpResponseStream: the response of a function URL or an API
 * Gateway streaming integration, whose body starts with JSON metadata
 * ({statusCode, headers, cookies}) and 8 NUL bytes. As AWS's, it hooks the
 * stream it is given and returns that same stream, so a handler that ignores
 * the return value works too.
 */
class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    // JSON.stringify escapes NUL, which may not appear inside the prelude.
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(PRELUDE_DELIMITER_BYTES));
    };
    return underlyingStream;
  }
}

/** aws-lambda-ric's stream takes strings and bytes as they are, anything else as JSON. */
function toStreamChunk(chunk) {
  return typeof chunk === 'string' || util.types.isUint8Array(chunk) ? chunk : JSON.stringify(chunk);
}

/**
 * The streaming POST of one invocation. Opened on the first body bytes or
 * at the end, whichever comes first: until then the content type may change
 * and no socket is held, so an uncaught exception can still go to /error.
 * aws-lambda-ric creates its http.request at once, but Node sends nothing
 * before the first write or the end either, so the host sees the same.
 */
class StreamedResponse {
  constructor(client, requestId) {
    this.client = client;
    this.requestId = requestId;
    this.contentType = DEFAULT_STREAM_CONTENT_TYPE;
    this.request = null;
    this.ended = false;
    this.errorTrailers = null; // set when the invocation fails before the end
    this.onRequestError = () => {};
    // Settles with the host's answer once the POST is opened and ended.
    this.answered = new Promise((resolve, reject) => {
      this.settleAnswer = { resolve, reject };
    });
    // Awaited only once the invocation ends; a lost connection before that
    // must not count as an unhandled rejection.
    this.answered.catch(() => {});
  }

  get opened() {
    return this.request !== null;
  }

  open() {
    if (this.request === null) {
      const { request, answer } = this.client.openResponseStream(this.requestId, this.contentType);
      this.request = request;
      request.on('error', (err) => this.onRequestError(err));
      answer.then(this.settleAnswer.resolve, this.settleAnswer.reject);
    }
    return this.request;
  }

  /** One HTTP chunk, flushed to the socket now; `callback` once the socket took it. */
  write(chunk, callback) {
    return this.open().write(chunk, callback);
  }

  /** The terminating chunk with the error trailers, if any, else an empty trailer section. */
  end(callback) {
    const request = this.open();
    if (!this.ended) {
      this.ended = true;
      if (this.errorTrailers) {
        request.addTrailers(this.errorTrailers);
      }
      request.end(callback);
    }
    return this.answered;
  }
}

function errorTrailers(error) {
  const doc = toErrorDocument(error);
  return {
    [ERROR_TYPE_HEADER]: headerSafe(doc.errorType),
    [ERROR_BODY_TRAILER]: Buffer.from(JSON.stringify(doc)).toString('base64'),
  };
}

/**
 * The responseStream handed to a streaming handler: a Writable (so
 * stream.pipeline works) whose writes go out one HTTP chunk each as they are
 * made. The next chunk waits until the socket took the last, so write()
 * returns false, and 'drain' follows, once highWaterMark bytes are waiting.
 * (aws-lambda-ric hands out the http.ClientRequest itself and gives
 * streamifyResponse's highWaterMark to the socket; the handler sees the
 * same write() / 'drain' back-pressure either way.)
 */
class ResponseStream extends Writable {
  #response;
  #writeCalled = false;

  constructor(response, highWaterMark) {
    super(highWaterMark === undefined ? {} : { highWaterMark });
    this.#response = response;
    // Set by HttpResponseStream.from (a public name: AWS's hook).
    this._onBeforeFirstWrite = undefined;
    // aws-lambda-ric's request has an 'error' listener: a write after the
    // end, or a lost connection, fails that write (and the invocation), it is
    // not an uncaught exception that takes the runtime down.
    this.on('error', () => {});
  }

  setContentType(contentType) {
    if (this.#writeCalled || this.#response.opened) {
      throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    }
    this.#response.contentType = contentType;
  }

  write(chunk, encoding, callback) {
    this.#writeCalled = true;
    return super.write(toStreamChunk(chunk), encoding, callback);
  }

  end(chunk, encoding, callback) {
    if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') {
      this.#writeCalled = true;
      chunk = toStreamChunk(chunk);
    }
    return super.end(chunk, encoding, callback);
  }

  _write(chunk, _encoding, callback) {
    this.#openForBody();
    this.#response.write(chunk, (err) => callback(err));
  }

  _final(callback) {
    // aws-lambda-ric runs the prelude hook on write() only, so there an
    // HttpResponseStream ended without a write loses its status and headers
    // (its issue #97). Here the prelude goes out at the end as well. Not for
    // a failed invocation: as in AWS its body is empty, the trailers tell.
    if (!this.#response.errorTrailers) {
      this.#openForBody();
    }
    this.#response.end(() => callback());
  }

  /** Opens the POST; the prelude hook, if any, writes just before the first body bytes. */
  #openForBody() {
    if (this.#response.opened) {
      return;
    }
    this.#response.open();
    if (typeof this._onBeforeFirstWrite === 'function') {
      this._onBeforeFirstWrite((chunk) => this.#response.write(chunk));
    }
  }
}

/**
 * One event for a streaming handler, handler(event, responseStream, context).
 * The stream is the answer: a failure, before or after the first bytes, is
 * sent as the error trailers of that same POST (aws-lambda-ric posts no
 * /error for it), and the invocation is over once the handler's promise has
 * resolved, the stream has ended and the host has answered the POST.
 */
class StreamingInvocation {
  constructor(client, requestId, onReported, highWaterMark) {
    this.client = client;
    this.requestId = requestId;
    this.onReported = onReported;
    this.reported = false;
    this.waitForEmptyEventLoop = true;
    this.handlerResolved = false;
    this.response = new StreamedResponse(client, requestId);
    this.responseStream = new ResponseStream(this.response, highWaterMark);
    this.response.onRequestError = (err) => this.responseStream.destroy(err);
  }

  run(handler, event, context) {
    let result;
    try {
      result = handler(event, this.responseStream, context);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (!isPromise(result)) {
      // A string, as aws-lambda-ric reports it (errorType "string").
      this.fail('Streaming does not support non-async handlers.');
      return;
    }
    result.then(
      (value) => {
        this.handlerResolved = true;
        if (value !== undefined) {
          console.warn('Streaming handlers ignore return values.');
        }
        // The handler may end the stream later (from a timer, say):
        // aws-lambda-ric waits for its request to complete, so do we.
        finished(this.responseStream, () => {
          if (this.responseStream.writableFinished) {
            this.succeed();
          } else {
            // Destroyed rather than ended (e.g. by a pipeline whose source failed).
            this.fail(this.responseStream.errored || 'Response stream is not finished.');
          }
        });
      },
      (error) => this.fail(error),
    );
  }

  succeed() {
    if (this.reported) {
      return;
    }
    this.reported = true;
    beforeExitAction = null;
    this.response.answered.then(() => this.next(), fatal);
  }

  fail(error) {
    if (this.reported) {
      return;
    }
    this.reported = true;
    beforeExitAction = null;
    logError('Invoke Error', error);
    this.response.errorTrailers = errorTrailers(error);
    const stream = this.responseStream;
    if (stream.destroyed) {
      // E.g. by a pipeline whose source failed: the trailers go now, on an
      // empty body if nothing was sent (a no-op if the POST has ended).
      this.response.end();
    } else if (!stream.writableEnded) {
      // Through the stream: what the handler wrote before it failed goes
      // out first, then the trailers (from _final).
      stream.end();
    }
    // Else the handler ended the stream: _final sends the trailers if it has
    // not run yet; if it has, the response stands, as in AWS.
    this.response.answered.then(() => this.next(), fatal);
  }

  /** The event loop emptied with the invocation still open: nothing can end it now. */
  eventLoopEmptied() {
    // aws-lambda-ric polls the next event here and leaves this one
    // unanswered until the platform's timeout; an error says why at once.
    this.fail(this.handlerResolved ? 'Response stream is not finished.' : new NodeJsExit());
  }

  /** An uncaught exception or unhandled rejection during the invocation. */
  reportCrash(error) {
    if (this.response.opened && !this.response.ended) {
      // The POST holds the only socket (maxSockets 1): its trailers are the
      // one way left to report the error before the process exits.
      this.response.errorTrailers = errorTrailers(error);
      return this.response.end();
    }
    if (this.response.ended) {
      // The response is complete; as aws-lambda-ric, also post /error (on
      // the socket, once the host has answered the stream).
      return this.response.answered.then(() => this.client.postInvocationError(this.requestId, error));
    }
    return this.client.postInvocationError(this.requestId, error);
  }

  next() {
    // As aws-lambda-ric's StreamingContext: with callbackWaitsForEmptyEventLoop
    // (the default) the next event waits until the handler's timers and
    // sockets have drained.
    if (this.waitForEmptyEventLoop) {
      beforeExitAction = () => setImmediate(this.onReported);
    } else {
      this.onReported();
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
let handlerInfo; // handlerMetadata(handler)
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

  if (handlerInfo.streaming) {
    runStreamingInvocation(answer, requestId);
    return;
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

function runStreamingInvocation(answer, requestId) {
  const invocation = new StreamingInvocation(
    client,
    requestId,
    scheduleNextInvocation,
    handlerInfo.highWaterMark,
  );
  currentInvocation = invocation;
  beforeExitAction = () => invocation.eventLoopEmptied();
  let context;
  let event;
  try {
    context = buildContext(answer.headers, invocation);
    // aws-lambda-ric's streaming context has no succeed, fail or done: the
    // stream is the answer.
    delete context.succeed;
    delete context.fail;
    delete context.done;
    event = JSON.parse(answer.body);
  } catch (err) {
    invocation.fail(err);
    return;
  }
  invocation.run(handler, event, context);
}

// ---------------------------------------------------------------------------
// Concurrent loops (AWS_LAMBDA_MAX_CONCURRENCY = N > 1): N of them in this
// event loop, each with its own RuntimeApiClient (so its own keep-alive
// socket: a loop's POST never waits behind another loop's GET next), each
// fetching an event, running it to its result, then fetching the next.
// As aws-lambda-ric's runtime for Managed Instances (its
// BufferedInvokeProcessor and StreamingInvokeProcessor): the handler is
// called with (event, context), its value or its promise's is the result;
// the context has no succeed, fail, done or callbackWaitsForEmptyEventLoop
// (waiting for an empty event loop means nothing while other invocations
// run; callback handlers are refused at init instead); each invocation runs
// inside its own InvokeStore context and _X_AMZN_TRACE_ID is not set, since
// the environment is shared by every invocation in flight.

const CALLBACK_HANDLER_MESSAGE =
  'ERROR: AWS Lambda does not support callback-based function handlers when using Managed Instances ' +
  '(AWS_LAMBDA_MAX_CONCURRENCY above 1). To use Managed Instances, modify this function to use a ' +
  'supported handler signature. For more information see ' +
  'https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html.';

// aws-lambda-ric 4.x (CALLBACK_ERROR_NODEJS24_ABOVE), docs/spec-additions.md §9.
const CALLBACK_HANDLER_MESSAGE_NODE24 =
  'ERROR: AWS Lambda has removed support for callback-based function handlers starting with Node.js 24. ' +
  'You need to modify this function to use a supported handler signature to use Node.js 24 or later. ' +
  'For more information see https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html.';
const NODE_MAJOR = Number(process.versions.node.split('.')[0]);

let firstEventArrived = false; // until then a crash is an init error

function startConcurrentLoops(address) {
  for (let index = 0; index < MAX_CONCURRENCY; index++) {
    const loopClient = index === 0 ? client : new RuntimeApiClient(address);
    runConcurrentLoop(loopClient).catch(fatal);
  }
}

async function runConcurrentLoop(loopClient) {
  for (;;) {
    const answer = await loopClient.nextInvocation();
    firstEventArrived = true;
    await new Promise((reported) => runConcurrentInvocation(loopClient, answer, reported));
    // As scheduleNextInvocation: the next GET from a clean stack.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** One event of one loop; `onReported` once its result is posted. */
function runConcurrentInvocation(loopClient, answer, onReported) {
  const headers = answer.headers;
  const requestId = headers[HEADER.requestId];
  const store = {
    [INVOKE_STORE_KEYS.REQUEST_ID]: requestId,
    [INVOKE_STORE_KEYS.X_RAY_TRACE_ID]: headers[HEADER.traceId],
    [INVOKE_STORE_KEYS.TENANT_ID]: headers[TENANT_ID_HEADER],
  };
  invokeStore.run(store, () => {
    if (handlerInfo.streaming) {
      const invocation = new StreamingInvocation(loopClient, requestId, onReported, handlerInfo.highWaterMark);
      invocation.waitForEmptyEventLoop = false;
      store[INVOCATION_KEY] = invocation;
      let context;
      let event;
      try {
        context = buildConcurrentContext(headers);
        event = JSON.parse(answer.body);
      } catch (err) {
        invocation.fail(err);
        return;
      }
      invocation.run(handler, event, context);
      return;
    }
    const invocation = new Invocation(loopClient, requestId, onReported);
    store[INVOCATION_KEY] = invocation;
    let result;
    try {
      const context = buildConcurrentContext(headers);
      const event = JSON.parse(answer.body);
      result = handler(event, context);
    } catch (err) {
      invocation.fail(err);
      return;
    }
    Promise.resolve(result).then(
      (value) => invocation.succeed(value),
      (error) => invocation.fail(error),
    );
  });
}

/** aws-lambda-ric's InvokeContext for Managed Instances. */
function buildConcurrentContext(headers) {
  const deadlineMs = Number(headers[HEADER.deadlineMs]) || 0;
  return {
    functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
    clientContext: parseJsonHeader(headers[HEADER.clientContext], 'ClientContext'),
    identity: parseJsonHeader(headers[HEADER.cognitoIdentity], 'CognitoIdentity'),
    invokedFunctionArn: headers[HEADER.functionArn],
    awsRequestId: headers[HEADER.requestId],
    xRayTraceId: headers[HEADER.traceId],
    tenantId: headers[TENANT_ID_HEADER],
    getRemainingTimeInMillis() {
      return deadlineMs - Date.now();
    },
  };
}

/**
 * A crash while loops run concurrently: before the first event an init
 * error; after it, an error for the invocation whose code threw (found in the
 * InvokeStore context the exception or rejection came from). The others in
 * flight end with the process, as a crash ends them in AWS.
 */
function reportConcurrentCrash(error) {
  if (!firstEventArrived) {
    return client ? client.postInitError(error) : Promise.resolve();
  }
  const invocation = invokeStore.get(INVOCATION_KEY);
  if (invocation && !invocation.reported) {
    invocation.reported = true;
    return invocation.reportCrash(error);
  }
  return Promise.resolve();
}

/** Report an error that escaped the handler (or the runtime), then exit. */
function reportFatal(error, exitStatus) {
  const exit = () => process.exit(exitStatus);
  const invocation = currentInvocation;
  let reporting;
  if (CONCURRENT) {
    reporting = reportConcurrentCrash(error);
  } else if (invocation === null) {
    // Before the first event: the sandbox's init failed.
    reporting = client ? client.postInitError(error) : Promise.resolve();
  } else if (!invocation.reported) {
    invocation.reported = true;
    reporting = invocation.reportCrash(error);
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
  installGlobalAwsLambda();
  try {
    handler = await loadHandler(taskRoot, process.env._HANDLER);
    handlerInfo = handlerMetadata(handler);
    if (handler.length >= 3 && !handlerInfo.streaming) {
      // aws-lambda-ric's errorOnDeprecatedCallback: Managed Instances, and
      // nodejs24.x and later (by the handler's arity, async or not).
      if (NODE_MAJOR >= 24) {
        throw new CallbackHandlerDeprecated(CALLBACK_HANDLER_MESSAGE_NODE24);
      }
      if (CONCURRENT) {
        throw new CallbackHandlerDeprecated(CALLBACK_HANDLER_MESSAGE);
      }
    }
  } catch (error) {
    // The label AWS prints for a failed init, e.g. a missing module.
    logError('Uncaught Exception', error);
    reportFatal(error, EXIT_STATUS_UNCAUGHT_EXCEPTION);
    return;
  }
  if (CONCURRENT) {
    startConcurrentLoops(address);
  } else {
    scheduleNextInvocation();
  }
}

main();
