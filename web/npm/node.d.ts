// Types of the rbdiff package's Node entry: the browser API plus file paths
// and Node streams (ready at import, no init needed).
import type { Readable, Writable } from 'node:stream';
import type { DecodeOptions, MergeOptions, MergeStats, Output, Source, Summary } from './index.js';
export type { DecodeOptions, DiffSummary, Finding, MergeOptions, MergeStats, Output, RecordSummary, Summary, StreamFormat } from './index.js';
export { Decoder, Merger, StreamInspector, featureNames, planChain, version, RbdiffError, PIECE, chunksOf, blobChunks } from './index.js';

/** A file path (string or file: URL), a Node Readable, or any browser-entry source. */
export type NodeSource = string | URL | Readable | Source;

export function inspect(source: NodeSource, options?: Omit<DecodeOptions, 'wasm'>): Promise<Summary>;
export function validate(source: NodeSource, options?: Omit<DecodeOptions, 'wasm'>): Promise<Summary>;
export function mergeChunks(sources: NodeSource[], options?: MergeOptions): AsyncGenerator<Uint8Array, MergeStats, void>;
/** The merged stream as a Node Readable. */
export function mergeStream(sources: NodeSource[], options?: MergeOptions): Readable;
/** Merges into a file path (removed on failure), a Node Writable (not ended), a WritableStream or a function. */
export function merge(sources: NodeSource[], output: string | URL | Writable | Output, options?: MergeOptions): Promise<MergeStats>;
export function merge(sources: NodeSource[], output?: undefined, options?: MergeOptions): Promise<MergeStats & { bytes: Uint8Array }>;
