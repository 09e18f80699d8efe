'use strict';
/** Errors of rxdb-nats-native, and native answers (`{ok}` / `{error}`) turned into values or throws. */

/** An error of rxdb-nats-native; `code` is stable (see the README's error table). */
class RxNatsError extends Error {
  constructor(info) {
    super(info.message);
    this.name = 'RxNatsError';
    this.code = info.code;
    if (info.subject !== undefined) this.subject = info.subject;
    if (info.sequence !== undefined) this.sequence = info.sequence;
    if (info.documentId !== undefined) this.documentId = info.documentId;
    if (info.attachmentId !== undefined) this.attachmentId = info.attachmentId;
  }
}

function invalidOption(message) {
  return new RxNatsError({ code: 'NATS_INVALID_OPTION', message });
}

/** Parses a native result `{ok}` / `{error}`; an error becomes a thrown RxNatsError. */
function unwrap(json) {
  const result = JSON.parse(json);
  if (result.error) throw new RxNatsError(result.error);
  return result.ok;
}

/** The message of whatever a user's function threw. */
function causeOf(err) {
  return err instanceof Error ? err.message : String(err);
}

module.exports = { RxNatsError, invalidOption, unwrap, causeOf };
