// rbdiff for Node: the same API as the browser entry (./index.js), ready at
// import (the WebAssembly module is loaded synchronously from this package),
// plus file paths and Node streams as sources and outputs.
import { readFileSync, createWriteStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { Readable, Writable } from 'node:stream';
import { once } from 'node:events';
import * as core from './index.js';

core.initSync({ module: readFileSync(new URL('./rbdiff_web_bg.wasm', import.meta.url)) });

export {
  Decoder, Merger, StreamInspector, featureNames, planChain, version, RbdiffError, PIECE, chunksOf, blobChunks,
} from './index.js';

/** Reads a file into one reused buffer: no allocation per chunk. */
async function* fileChunks(path, size = core.PIECE) {
  const fh = await open(path, 'r');
  try {
    const buf = new Uint8Array(size);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, size, null);
      if (bytesRead === 0) return;
      yield buf.subarray(0, bytesRead);
    }
  } finally {
    await fh.close();
  }
}

/** A source for the core API: a path (string or file: URL) becomes the file's bytes. */
function source(s) {
  if (typeof s === 'string' || s instanceof URL) return fileChunks(s);
  return s;
}

/**
 * Decodes a whole stream and returns its summary. `source`: a file path,
 * a Node Readable, a web ReadableStream, a Blob, bytes, or an (async)
 * iterable of chunks. See index.d.ts for the summary and options.
 */
export function inspect(src, options) {
  return core.inspect(source(src), options);
}

/** Like `inspect`; rejects with an RbdiffError (`offset`, `kind`) if the stream is invalid. */
export function validate(src, options) {
  return core.validate(source(src), options);
}

/** The merged stream of N consecutive diffs, in pieces (see index.js). */
export function mergeChunks(sources, options) {
  return core.mergeChunks(sources.map(source), options);
}

/** The merged stream as a Node Readable (backpressure-aware). */
export function mergeStream(sources, options) {
  return Readable.from(mergeChunks(sources, options), { objectMode: false });
}

async function toWritable(gen, out) {
  let r;
  for (;;) {
    r = await gen.next();
    if (r.done) break;
    if (!out.write(r.value)) await once(out, 'drain');
  }
  return r.value;
}

/**
 * Merges N consecutive diffs (chain order) as `rbd merge-diff` does.
 * `output`: a file path (written, removed again if the merge fails), a Node
 * Writable (not ended), a web WritableStream, a function(chunk), or omitted
 * (the result then carries the merged `bytes`). Resolves with
 * `{ records, bytesWritten, size }`.
 */
export async function merge(sources, output, options) {
  if (typeof output === 'string' || output instanceof URL) {
    const out = createWriteStream(output);
    try {
      await once(out, 'open');
      const stats = await toWritable(mergeChunks(sources, options), out);
      out.end();
      await once(out, 'finish');
      return stats;
    } catch (e) {
      out.destroy();
      await rm(output, { force: true });
      throw e;
    }
  }
  if (output instanceof Writable) return toWritable(mergeChunks(sources, options), output);
  return core.merge(sources.map(source), output, options);
}

