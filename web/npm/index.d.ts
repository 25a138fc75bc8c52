// Types of the rbdiff package (browser / bundler entry). The low-level
// classes come from wasm-bindgen's generated rbdiff_web.d.ts.
export { default as init, initSync, Decoder, Merger, StreamInspector, featureNames, planChain, version } from './rbdiff_web.js';
import type { InitInput } from './rbdiff_web.js';

/** Bytes, a Blob/File, a web ReadableStream, or an (async) iterable of chunks (e.g. a Node Readable). */
export type Source =
  | Uint8Array | ArrayBuffer | ArrayBufferView | Blob | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | ArrayBufferView | ArrayBuffer> | Iterable<Uint8Array | ArrayBufferView | ArrayBuffer>;

export type StreamFormat = 'diff-v1' | 'diff-v2' | 'image-v2';

export interface DecodeOptions {
  /** `default`: structural errors fail, questionable content warns; `strict`: everything fails; `rbd`: what rbd 16.2.15 accepts. */
  policy?: 'default' | 'strict' | 'rbd';
  /** Formats accepted (default `all`). */
  accept?: 'all' | 'diffs' | 'diff-v1' | 'image-v2';
  /** Records kept per diff in `records` (counts stay complete). Default 100000. */
  maxRecords?: number;
  /** Warnings kept (`warnings_total` stays complete). Default 100. */
  maxWarnings?: number;
  /** Called with the bytes read so far. */
  onProgress?: (bytes: number) => void;
  /** Browser entry only: where to load the .wasm from (default: next to index.js). */
  wasm?: InitInput;
}

export interface Finding {
  /** Stream offset of the offending item. */
  offset: number;
  /** The codec's error kind: `unexpected-eof`, `unknown-tag`, `bad-banner`, `out-of-order`, … */
  kind: string;
  message: string;
}

export interface RecordSummary { stream_offset: number; tag: 'w' | 'z'; offset: number; length: number }

export interface DiffSummary {
  index: number;
  stream_offset: number;
  stream_bytes: number;
  header_tags: string[];
  from_snap: string | null;
  to_snap: string | null;
  protected: boolean | null;
  size: number | null;
  n_w: number;
  n_z: number;
  w_bytes: number;
  z_bytes: number;
  w_all_zero_records: number;
  n_unknown: number;
  records_sorted: boolean;
  records_overlap: boolean;
  records_beyond_size: boolean;
  complete: boolean;
  records: RecordSummary[];
  records_truncated: boolean;
  integrity: { entries: number; base_size: number | null; ok: boolean; fault: string | null } | null;
}

export interface Summary {
  format: StreamFormat | null;
  image: { order: number | null; features: number | null; stripe_unit: number | null; stripe_count: number | null; meta: { key: string; value: string }[] } | null;
  diff_count: number | null;
  diffs: DiffSummary[];
  stream_bytes: number;
  trailing_bytes: number;
  unknown_records: number;
  warnings: Finding[];
  warnings_total: number;
  error: Finding | null;
  valid: boolean;
}

/** A decode or merge failure located in a stream. */
export class RbdiffError extends Error {
  /** Stream offset of the fault (in input `input` for merges). */
  offset: number | null;
  /** The codec's error kind, or `snapshot-chain`, `no-inputs`, `usage` for merges. */
  kind: string | null;
  /** 0-based input index (merges). */
  input: number | null;
  /** Merge phase. */
  phase: 'header' | 'record-header' | 'data' | 'output' | null;
  /** The summary up to the fault (validate). */
  summary: Summary | null;
}

export interface MergeOptions {
  /** Output format: `v1` (default, what rbd merge-diff writes) or `v2`. */
  format?: 'v1' | 'v2';
  /** Largest output piece (default 1 MiB). */
  chunk?: number;
  onProgress?: (p: { read: number; written: number }) => void;
  wasm?: InitInput;
}

export interface MergeStats {
  /** Records written. */
  records: number;
  /** Bytes of the merged stream. */
  bytesWritten: number;
  /** Image size of the result. */
  size: number | null;
}

export type Output =
  | ((chunk: Uint8Array) => void | Promise<void>)
  | WritableStream<Uint8Array>
  | WritableStreamDefaultWriter<Uint8Array>;

export const PIECE: number;
/** Loads the WebAssembly module once (the async functions call it). */
export function ensureInit(wasm?: InitInput): Promise<unknown>;
/** Decodes a whole stream; an invalid stream is reported in `summary.error`, not thrown. */
export function inspect(source: Source, options?: DecodeOptions): Promise<Summary>;
/** Decodes a whole stream; rejects with an RbdiffError (`offset`, `kind`) if it is invalid. */
export function validate(source: Source, options?: DecodeOptions): Promise<Summary>;
/** The merge of N consecutive diffs (chain order), in pieces; bounded memory. */
export function mergeChunks(sources: Source[], options?: MergeOptions): AsyncGenerator<Uint8Array, MergeStats, void>;
/** Merges into `output`; without one, the result carries the merged `bytes`. */
export function merge(sources: Source[], output: Output, options?: MergeOptions): Promise<MergeStats>;
export function merge(sources: Source[], output?: undefined, options?: MergeOptions): Promise<MergeStats & { bytes: Uint8Array }>;
/** Any source as Uint8Array pieces of at most PIECE bytes. */
export function chunksOf(source: Source): AsyncGenerator<Uint8Array, void, void>;
/** A Blob read into reused buffers (each piece is valid until the next is asked for). */
export function blobChunks(blob: Blob, options?: { chunk?: number; depth?: number }): AsyncGenerator<Uint8Array, void, void>;
