// rbdiff: Ceph RBD diff streams (rbd export-diff / export --export-format 2)
// in the browser, bundlers and Node. Streaming inspect, validate and N-way
// merge (byte-identical to `rbd merge-diff`) on the rbdiff codec compiled to
// WebAssembly. This file has no Node imports: browsers and bundlers load it;
// Node loads ./node.js, which adds file paths and Node streams.
import init, { initSync, Decoder, Merger, StreamInspector, featureNames, planChain, version } from './rbdiff_web.js';

export { init, initSync, Decoder, Merger, StreamInspector, featureNames, planChain, version };

/** Largest piece handed to the WebAssembly module at once (bounds its memory). */
export const PIECE = 1 << 20;

let ready = null;
/** Loads the WebAssembly module once (fetches rbdiff_web_bg.wasm next to this file unless given). */
export function ensureInit(wasm) {
  ready ??= init(wasm === undefined ? undefined : { module_or_path: wasm }).catch((e) => {
    ready = null; // let a later call try again (e.g. with another location)
    throw e;
  });
  return ready;
}

/** A decode or merge failure located in a stream. */
export class RbdiffError extends Error {
  constructor(message, { offset = null, kind = null, input = null, phase = null, summary = null } = {}) {
    super(message);
    this.name = 'RbdiffError';
    /** Stream offset of the fault (in input `input` for merges). */
    this.offset = offset;
    /** The codec's error kind (`unexpected-eof`, `unknown-tag`, …) or a merge kind. */
    this.kind = kind;
    /** 0-based input index (merges). */
    this.input = input;
    /** Merge phase: header, record-header, data, output. */
    this.phase = phase;
    /** The summary up to the fault (validate). */
    this.summary = summary;
  }
}

const isBlob = (x) => typeof Blob !== 'undefined' && x instanceof Blob;
const isReadableStream = (x) => typeof ReadableStream !== 'undefined' && x instanceof ReadableStream;

function toBytes(c) {
  if (c instanceof Uint8Array) return c;
  if (ArrayBuffer.isView(c)) return new Uint8Array(c.buffer, c.byteOffset, c.byteLength);
  if (c instanceof ArrayBuffer) return new Uint8Array(c);
  if (typeof c === 'string') throw new TypeError('rbdiff: got a string chunk; pass bytes (Node: a file path goes to rbdiff\'s Node entry)');
  throw new TypeError(`rbdiff: expected bytes, got ${Object.prototype.toString.call(c)}`);
}

/**
 * Reads a Blob/File with a BYOB reader into `depth` reused buffers: no
 * allocation per chunk, so memory stays flat however big the file is.
 * Each yielded view is valid until the next one is asked for.
 */
export async function* blobChunks(blob, { chunk = 2 << 20, depth = 4 } = {}) {
  const stream = blob.stream();
  let reader;
  try {
    reader = stream.getReader({ mode: 'byob' });
  } catch {
    yield* streamChunks(stream);
    return;
  }
  const reads = [];
  for (let i = 0; i < depth; i++) reads.push(reader.read(new Uint8Array(chunk), { min: chunk }));
  try {
    for (;;) {
      const { done, value } = await reads.shift();
      // at the end, a read that got less than `min` comes back done *with* its bytes
      if (value?.byteLength) yield value;
      if (done) return;
      // the consumer is done with `value`: its buffer takes the next read
      reads.push(reader.read(new Uint8Array(value.buffer, 0, chunk), { min: chunk }));
    }
  } finally {
    reader.releaseLock?.();
  }
}

async function* streamChunks(stream) {
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Any byte source as an async iterator of Uint8Array pieces of at most
 * PIECE bytes: Uint8Array/ArrayBuffer/typed array, Blob/File,
 * ReadableStream, or a (async) iterable of chunks (Node Readable, arrays).
 */
export async function* chunksOf(source) {
  let it;
  if (source instanceof Uint8Array || ArrayBuffer.isView(source) || source instanceof ArrayBuffer) it = [toBytes(source)];
  else if (isBlob(source)) it = blobChunks(source);
  else if (isReadableStream(source)) it = streamChunks(source);
  else if (source && (Symbol.asyncIterator in source || Symbol.iterator in source) && typeof source !== 'string') it = source;
  else throw new TypeError(`rbdiff: unsupported source ${Object.prototype.toString.call(source)}: pass bytes, a Blob, a ReadableStream or an (async) iterable of chunks`);
  for await (const c of it) {
    const b = toBytes(c);
    for (let at = 0; at < b.length; at += PIECE) yield b.subarray(at, Math.min(at + PIECE, b.length));
  }
}

function decoderOptions(o = {}) {
  return { policy: o.policy, accept: o.accept, maxRecords: o.maxRecords, maxWarnings: o.maxWarnings };
}

function located(summary) {
  const e = summary.error;
  return new RbdiffError(`${e.message} at stream offset ${e.offset}`, { offset: e.offset, kind: e.kind, summary });
}

/**
 * Decodes a whole stream and returns its summary (format, header values,
 * per-diff counts, records up to `maxRecords`, warnings, `valid`, `error`).
 * An invalid stream is not an exception here: see `summary.error`.
 * Options: `{ policy: 'default'|'strict'|'rbd', accept: 'all'|'diffs'|'diff-v1'|'image-v2',
 * maxRecords, maxWarnings, onProgress(bytes) }`.
 */
export async function inspect(source, options = {}) {
  await ensureInit(options.wasm);
  const dec = new Decoder(decoderOptions(options));
  try {
    let n = 0;
    for await (const piece of chunksOf(source)) {
      n += piece.length;
      if (dec.push(piece)) break;
      options.onProgress?.(n);
    }
    return JSON.parse(dec.finish());
  } finally {
    dec.free();
  }
}

/**
 * Like `inspect`, but rejects with an RbdiffError (`offset`, `kind`,
 * `summary`) if the stream is invalid; resolves with the summary otherwise.
 */
export async function validate(source, options = {}) {
  const summary = await inspect(source, options);
  if (summary.error) throw located(summary);
  return summary;
}

/**
 * Merges N consecutive diffs (chain order) as `rbd merge-diff` does and
 * yields the merged stream in pieces of at most `chunk` bytes. Only the
 * input the merger asks for is read: memory stays bounded whatever the
 * sizes. Options: `{ format: 'v1'|'v2', chunk, onProgress({ read, written }) }`.
 * A bad input throws an RbdiffError with `input`, `offset`, `kind`, `phase`.
 */
export async function* mergeChunks(sources, options = {}) {
  await ensureInit(options.wasm);
  const its = sources.map((s) => chunksOf(s)[Symbol.asyncIterator]());
  const m = new Merger(its.length, options.format ?? 'v1');
  const max = options.chunk ?? PIECE;
  let read = 0;
  let written = 0;
  try {
    for (;;) {
      let out;
      try {
        out = m.pull(max);
      } catch (e) {
        throw new RbdiffError(e.message, e);
      }
      if (out.length) {
        written += out.length;
        yield out;
      }
      if (m.done) break;
      const i = m.needInput;
      if (i >= 0) {
        const { done, value } = await its[i].next();
        const piece = done ? new Uint8Array(0) : value;
        read += piece.length;
        try {
          m.push(i, piece);
        } catch (e) {
          throw new RbdiffError(e.message, e);
        }
        options.onProgress?.({ read, written });
      }
    }
    return { records: m.records(), bytesWritten: m.bytesWritten(), size: m.size() ?? null };
  } finally {
    m.free();
    // close every input (files, streams), also those the merge did not read to the end
    await Promise.all(its.map((it) => it.return?.()));
  }
}

async function writeTo(sink, chunk) {
  if (typeof sink === 'function') return sink(chunk);
  if (sink && typeof sink.getWriter === 'function') throw new TypeError('rbdiff: pass writableStream.getWriter()');
  if (sink && typeof sink.write === 'function') return sink.write(chunk);
  throw new TypeError('rbdiff: output must be a function(chunk), a WritableStream writer or undefined');
}

/**
 * Merges N consecutive diffs into `output` and resolves with
 * `{ records, bytesWritten, size }`. `output`: a function(chunk) (may return
 * a promise), a WritableStream (awaited writes; closed at the end), a
 * WritableStreamDefaultWriter, or omitted: the merged bytes are collected
 * and returned as `bytes` (a Uint8Array; use only for small results).
 */
export async function merge(sources, output, options = {}) {
  const parts = [];
  let sink = output ?? ((c) => { parts.push(c); });
  let writer = null;
  if (output && typeof output.getWriter === 'function') {
    writer = output.getWriter();
    sink = writer;
  }
  const gen = mergeChunks(sources, options);
  let r;
  try {
    for (;;) {
      r = await gen.next();
      if (r.done) break;
      if (writer) await writer.ready;
      await writeTo(sink, r.value);
    }
    if (writer) await writer.close();
  } catch (e) {
    if (writer) await writer.abort(e).catch(() => {});
    throw e;
  }
  const stats = r.value;
  if (output === undefined) {
    const bytes = new Uint8Array(stats.bytesWritten);
    let at = 0;
    for (const p of parts) { bytes.set(p, at); at += p.length; }
    return { ...stats, bytes };
  }
  return stats;
}
