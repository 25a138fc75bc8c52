// rbdiff viewer worker: owns the wasm decoder. Streams dropped Files into
// StreamInspector, answers table/coverage queries and merges chains. Never
// posts payload bytes except the merged output the user asked for.
// ./pkg is the npm package `rbdiff` (scripts/build-web.sh), used as any web
// app would use it.
import { ensureInit, blobChunks, merge, StreamInspector, planChain, featureNames, version } from './pkg/index.js';

const CHUNK = 8 << 20;            // slice size read from the File
const PROGRESS_MS = 120;          // progress message interval

const ready = ensureInit();
let wasm = null;
const sessions = new Map();       // id -> { insp, file, state }
let queue = Promise.resolve();    // inspections run one after another

function wasmMemory() {
  return wasm ? wasm.memory.buffer.byteLength : 0;
}

// Yields the file's bytes in order. `byob` (default): the package's
// blobChunks, file.stream() read into `depth` reused buffers, no allocation
// per chunk. The other modes allocate a fresh ArrayBuffer per chunk, which
// the worker's V8 frees only at a major GC, and that comes late in a worker
// that hardly touches its JS heap: renderer RSS then grows with the file
// (measured with 8 MiB slices: +110 MB at 256 MiB, +350 MB at 2 GiB; flat
// when forcing a GC every 4 slices, flat with reused buffers). `slices`
// keeps `depth` slice reads in flight; `stream` uses file.stream(); `sync`
// uses FileReaderSync.
async function* chunks(file, { mode = 'byob', depth = 4, chunk = mode === 'byob' ? 2 << 20 : CHUNK } = {}) {
  const size = file.size;
  if (mode === 'byob') {
    yield* blobChunks(file, { chunk, depth });
    return;
  }
  if (mode === 'stream') {
    const reader = file.stream().getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      yield value;
    }
  }
  if (mode === 'sync') {
    const fr = new FileReaderSync();
    for (let pos = 0; pos < size; pos += chunk) {
      yield new Uint8Array(fr.readAsArrayBuffer(file.slice(pos, Math.min(pos + chunk, size))));
    }
    return;
  }
  const inflight = [];
  let next = 0;
  const fill = () => {
    while (inflight.length < depth && next < size) {
      const end = Math.min(next + chunk, size);
      inflight.push(file.slice(next, end).arrayBuffer());
      next = end;
    }
  };
  fill();
  while (inflight.length) {
    const buf = await inflight.shift();
    fill();
    yield new Uint8Array(buf);
  }
}

async function inspect(id, file, opts, read) {
  const insp = new StreamInspector(opts ?? {});
  const s = { insp, file, state: 'reading' };
  sessions.set(id, s);
  const size = file.size;
  const t0 = performance.now();
  let pos = 0;
  let last = 0;
  let readMs = 0;
  let decodeMs = 0;
  let r0 = performance.now();
  for await (const bytes of chunks(file, read)) {
    const r1 = performance.now();
    readMs += r1 - r0;
    const failed = insp.push(bytes);
    pos += bytes.length;
    r0 = performance.now();
    decodeMs += r0 - r1;
    if (failed) break;
    if (r0 - last > PROGRESS_MS) {
      last = r0;
      postMessage({ type: 'progress', id, size, progress: insp.progress(), ms: r0 - t0 });
    }
  }
  const summary = insp.finish();
  s.state = 'done';
  const ms = performance.now() - t0;
  postMessage({
    type: 'done', id, size, summary, progress: insp.progress(),
    timing: {
      ms, readMs, decodeMs, bytes: pos, wasmMemory: wasmMemory(), read: read ?? null,
      workerHeap: self.performance?.memory?.usedJSHeapSize ?? null,
    },
  });
}

function session(id) {
  const s = sessions.get(id);
  if (!s) throw new Error(`no file with id ${id}`);
  return s;
}

const handlers = {
  open({ id, file, opts, read }) {
    queue = queue.then(() => inspect(id, file, opts, read)).catch((e) => {
      postMessage({ type: 'done', id, size: file.size, summary: JSON.stringify({ error_text: String(e), valid: false, diffs: [] }), timing: {} });
    });
    return true;
  },
  page({ id, from, count }) {
    const data = session(id).insp.recordsPage(from, count);
    return { result: data, transfer: [data.buffer] };
  },
  detail({ id, row }) {
    return JSON.parse(session(id).insp.detail(row));
  },
  coverage({ id, diff, start, end, bins }) {
    const data = session(id).insp.coverage(diff, start, end, bins);
    return { result: data, transfer: [data.buffer] };
  },
  rowAtStream({ id, at }) {
    return session(id).insp.rowAtStream(at);
  },
  rowAtImage({ id, diff, offset }) {
    return session(id).insp.rowAtImage(diff, offset);
  },
  exportJson({ id }) {
    const s = session(id);
    return s.insp.exportJson(s.file.name);
  },
  features({ bits }) {
    return featureNames(bits);
  },
  plan({ entries }) {
    return JSON.parse(planChain(JSON.stringify(entries)));
  },
  async merge({ ids, req }) {
    const files = ids.map((id) => session(id).file);
    const parts = [];
    const t0 = performance.now();
    let last = 0;
    const stats = await merge(files, (chunk) => { parts.push(chunk); }, {
      onProgress({ read, written }) {
        if (read >= last + (8 << 20)) {
          last = read;
          postMessage({ type: 'merge-progress', req, read, written });
        }
      },
    });
    const blob = new Blob(parts, { type: 'application/octet-stream' });
    return { records: stats.records, bytes_written: stats.bytesWritten, size: stats.size, blob, ms: performance.now() - t0 };
  },
  memory() {
    return { wasmMemory: wasmMemory() };
  },
  version() {
    return version();
  },
};

self.onmessage = async (ev) => {
  const msg = ev.data;
  try {
    wasm ??= await ready;
    const h = handlers[msg.type];
    if (!h) throw new Error(`unknown request ${msg.type}`);
    let out = await h(msg);
    let transfer = [];
    if (out && typeof out === 'object' && 'transfer' in out && 'result' in out) {
      transfer = out.transfer;
      out = out.result;
    }
    if (msg.req !== undefined) postMessage({ type: 'reply', req: msg.req, ok: true, result: out }, transfer);
  } catch (e) {
    if (msg.req !== undefined) postMessage({ type: 'reply', req: msg.req, ok: false, error: String(e?.message ?? e) });
  }
};

ready.then((w) => { wasm = w; postMessage({ type: 'ready', version: version() }); },
  (e) => postMessage({ type: 'fatal', error: String(e?.message ?? e) }));
