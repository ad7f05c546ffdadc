// Logs below and at the function's application log level.
exports.handler = async (event) => {
  console.log('log line, below the level');
  console.debug('debug line, below the level');
  console.warn('warn line for', event.order);
  return { ok: true };
};
