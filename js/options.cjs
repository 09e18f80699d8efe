'use strict';
/**
 * The options of replicateNats(), one place for each rule. Here (JavaScript): the names and
 * types of the options this file's tables list, the defaults of the RxDB options, and the RxDB
 * options' values (batch sizes, retryTime, the collection). In src/options.rs (Rust): the values
 * and combinations of everything the native side uses (streamName, subjectPrefix, kv, deletedField,
 * connection, streamConfig, attachments, maxDocumentBytes), checked once by `validateOptions` at
 * replicateNats() time; the layout (src/layout.rs) is derived from them and never rewrites them.
 * `__test__/options.test.mjs` checks index.d.ts and the README against both.
 */
const { RxNatsError, invalidOption } = require('./errors.cjs');

/** Option names and the `typeof` each must have ('object': a non-null object; 'any': unchecked). */
const OPTIONS = {
  collection: 'object',
  replicationIdentifier: 'string',
  streamName: 'string',
  subjectPrefix: 'string',
  connection: 'object',
  live: 'boolean',
  pull: 'object',
  push: 'object',
  deletedField: 'string',
  retryTime: 'number',
  autoStart: 'boolean',
  waitForLeadership: 'boolean',
  toggleOnDocumentVisible: 'boolean',
  streamConfig: 'object',
  maxDocumentBytes: 'number',
  officialDeletedFlag: 'boolean',
  attachments: 'object',
  kv: 'object',
  tenant: 'boolean',
};
const PULL_OPTIONS = { batchSize: 'number', modifier: 'function', initialCheckpoint: 'any' };
const PUSH_OPTIONS = {
  batchSize: 'number',
  modifier: 'function',
  initialCheckpoint: 'any',
  waitBeforePersist: 'function',
};
const ATTACHMENT_OPTIONS = { bucket: 'string', inlineMaxBytes: 'number' };
const KV_OPTIONS = { bucket: 'string', history: 'number', create: 'boolean' };
const REQUIRED = ['collection', 'replicationIdentifier'];

/** Defaults of the options this side applies (index.d.ts says the same; a test checks it). */
const DEFAULTS = {
  deletedField: '_deleted',
  live: true,
  retryTime: 5000,
  autoStart: true,
  waitForLeadership: true,
  officialDeletedFlag: true,
  'pull.batchSize': 100,
  'push.batchSize': 100,
};

function checkKeys(object, known, where) {
  for (const [key, value] of Object.entries(object)) {
    const type = known[key];
    if (!type) {
      throw invalidOption(
        `unknown option ${where}${key}: replicateNats() takes ${Object.keys(known).join(', ')}`
      );
    }
    if (value === undefined || type === 'any') continue;
    if (type === 'object' ? value === null || typeof value !== 'object' : typeof value !== type) {
      throw invalidOption(`option ${where}${key} must be a ${type}, got ${value === null ? 'null' : typeof value}`);
    }
  }
}

function checkBatchSize(options, where) {
  const size = options && options.batchSize;
  if (size !== undefined && !(Number.isInteger(size) && size >= 1)) {
    throw invalidOption(`option ${where}.batchSize must be a positive integer, got ${String(size)}`);
  }
}

/** JSON would drop functions silently; nats.js authenticators are functions there. */
function checkConnection(connection) {
  for (const [key, value] of Object.entries(connection || {})) {
    if (typeof value === 'function') {
      throw invalidOption(
        `option connection.${key} is a function, which rxdb-nats-native does not support: ` +
          'use connection.user/pass, token, nkeySeed or credsFile'
      );
    }
  }
}

const orDefault = (value, name) => (value === undefined ? DEFAULTS[name] : value);

/**
 * Checks every option now, so mistakes fail at replicateNats() time, naming the option.
 * Returns the settings the glue works with (defaults applied) and the native side's options
 * as JSON, already checked by it (`validateOptions`).
 */
function settingsOf(options, native) {
  if (!options || typeof options !== 'object') throw invalidOption('replicateNats() needs an options object');
  checkKeys(options, OPTIONS, '');
  for (const required of REQUIRED) {
    if (options[required] === undefined) throw invalidOption(`option ${required} is required`);
  }
  if (options.kv) checkKeys(options.kv, KV_OPTIONS, 'kv.');
  if (!options.collection.schema || typeof options.collection.schema.primaryPath !== 'string') {
    throw invalidOption('option collection must be an RxCollection');
  }
  if (options.replicationIdentifier === '') throw invalidOption('option replicationIdentifier must not be empty');
  if (options.retryTime !== undefined && !(options.retryTime >= 0)) {
    throw invalidOption('option retryTime must be a number of milliseconds >= 0');
  }
  if (options.pull) checkKeys(options.pull, PULL_OPTIONS, 'pull.');
  if (options.push) checkKeys(options.push, PUSH_OPTIONS, 'push.');
  checkBatchSize(options.pull, 'pull');
  checkBatchSize(options.push, 'push');
  if (options.attachments) {
    checkKeys(options.attachments, ATTACHMENT_OPTIONS, 'attachments.');
    const max = options.attachments.inlineMaxBytes;
    if (max !== undefined && !(Number.isInteger(max) && max >= 0)) {
      throw invalidOption(`option attachments.inlineMaxBytes must be an integer >= 0 (bytes), got ${String(max)}`);
    }
  }
  checkConnection(options.connection);
  const deletedField = orDefault(options.deletedField, 'deletedField');
  const nativeOptions = JSON.stringify({
    streamName: options.streamName,
    subjectPrefix: options.subjectPrefix,
    primaryPath: options.collection.schema.primaryPath,
    deletedField,
    connection: options.connection || {},
    streamConfig: options.streamConfig || {},
    maxDocumentBytes: options.maxDocumentBytes,
    collectionSchema: options.collection.schema.jsonSchema,
    pullModifier: !!(options.pull && options.pull.modifier),
    pulls: !!options.pull,
    attachments: options.attachments || {},
    kv: options.kv,
    officialDeletedFlag: orDefault(options.officialDeletedFlag, 'officialDeletedFlag'),
    tenant: options.tenant,
  });
  const problem = native.validateOptions(nativeOptions);
  if (problem) throw new RxNatsError(JSON.parse(problem));
  return {
    nativeOptions,
    collection: options.collection,
    primaryPath: options.collection.schema.primaryPath,
    replicationIdentifier: options.replicationIdentifier,
    deletedField,
    live: orDefault(options.live, 'live'),
    retryTime: orDefault(options.retryTime, 'retryTime'),
    autoStart: orDefault(options.autoStart, 'autoStart'),
    waitForLeadership: orDefault(options.waitForLeadership, 'waitForLeadership'),
    toggleOnDocumentVisible: options.toggleOnDocumentVisible,
    pull: options.pull && { ...options.pull, batchSize: orDefault(options.pull.batchSize, 'pull.batchSize') },
    push: options.push && { ...options.push, batchSize: orDefault(options.push.batchSize, 'push.batchSize') },
  };
}

module.exports = {
  settingsOf,
  checkConnection,
  OPTIONS,
  PULL_OPTIONS,
  PUSH_OPTIONS,
  ATTACHMENT_OPTIONS,
  KV_OPTIONS,
  DEFAULTS,
};
