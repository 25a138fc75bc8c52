// The rbdiff component in Node: transpiled with jco (scripts/test-component.sh
// writes it to ../gen), driven on the real-rbd corpus: inspect and validate
// rbd's diffs, merge them byte-identically to rbd merge-diff, apply each
// chain onto a device in memory (sha256 as the manifests record) and
// export-diff between two of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { codec, images } from '../gen/rbdiff.js';
import { Device } from '../device.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const fixtures = process.env.RBDIFF_FIXTURES || join(root, 'tests', 'fixtures', 'rbd-16.2.15');
assert.ok(existsSync(fixtures), `real-rbd corpus not found at ${fixtures}`);
const CASES = ['basic-64k', 'empty', 'grow', 'shrink', 'discard-zero'];

const manifest = (c) => JSON.parse(readFileSync(join(fixtures, c, 'manifest.json'), 'utf8'));
const read = (c, rel) => new Uint8Array(readFileSync(join(fixtures, c, rel)));
const sha = (b) => createHash('sha256').update(b).digest('hex');
const recordedSha = (m, rel) => (m.files[rel] || m.unstored_files[rel] || {}).sha256;

/** The component's `err` (jco throws it; the WIT record is its payload). */
function failure(f) {
  try {
    f();
  } catch (e) {
    assert.ok(e.payload, `not a component error: ${e}`);
    return e.payload;
  }
  assert.fail('expected an error');
}

/** The merger's host loop: pull, keep the output, push what it asks for. */
function merge(inputs, chunk = 65536) {
  const m = new codec.Merger(inputs.length, 'diff-v1');
  const pos = inputs.map(() => 0);
  const out = [];
  for (;;) {
    const step = m.pull(1 << 20);
    out.push(step.output);
    if (step.done) break;
    if (step.needInput !== undefined) {
      const i = step.needInput;
      const piece = inputs[i].subarray(pos[i], pos[i] + chunk);
      pos[i] += piece.length;
      m.push(i, piece);
    }
  }
  return Buffer.concat(out);
}

test('inspect every diff as the manifests describe it', () => {
  let n = 0;
  for (const c of CASES) {
    for (const [rel, f] of Object.entries(manifest(c).files)) {
      if (!f.diff || f.parse_error || !existsSync(join(fixtures, c, rel))) continue;
      const data = read(c, rel);
      // Any chunking gives the same summary.
      const s = codec.inspect([data.subarray(0, 1000), data.subarray(1000)], codec.defaultOptions());
      assert.equal(s.valid, true, rel);
      assert.equal(s.format, f.diff.format === 1 ? 'diff-v1' : 'diff-v2');
      const d = s.diffs[0];
      assert.deepEqual(
        d.records.map((r) => [r.tag, Number(r.offset), Number(r.length)]),
        f.diff.records.map((r) => [r[0], r[1], r[2]]),
        `${c}/${rel}`,
      );
      assert.equal(d.toSnap, f.diff.to_snap);
      assert.equal(d.fromSnap, f.diff.from_snap);
      assert.equal(Number(d.wBytes), f.diff.w_bytes);
      assert.equal(Number(s.streamBytes), data.length);
      n++;
    }
  }
  assert.ok(n >= 60, `${n} diffs`);
});

test('validate: warnings, and the first error with its stream offset', () => {
  const d = read('basic-64k', 'diff/0..s1.diff');
  assert.deepEqual(codec.validate([d], codec.defaultOptions()), []);
  const e = failure(() => codec.validate([d.subarray(0, 1000)], codec.defaultOptions()));
  assert.equal(e.kind, 'unexpected-eof');
  assert.equal(typeof e.offset, 'bigint');
  assert.match(e.message, /unexpected end of stream/);
});

test('merges are byte-identical to rbd merge-diff', () => {
  let n = 0;
  for (const c of CASES) {
    for (const r of manifest(c).relationships) {
      if (r.kind !== 'merge' || !existsSync(join(fixtures, c, r.output))) continue;
      const got = merge(r.inputs.map((i) => read(c, i)), 4099);
      assert.ok(Buffer.from(read(c, r.output)).equals(got), `${c}: ${r.output}`);
      n++;
    }
  }
  assert.ok(n >= 20, `${n} merges`);
});

/** Apply the chain of `c` onto one in-memory device; returns point -> bytes. */
function chain(c) {
  const m = manifest(c);
  const [img] = Object.values(m.images);
  const pts = ['0', ...img.snapshots.map((s) => s.name), 'head'];
  const dev = new Device();
  const snaps = [];
  const content = { 0: new Uint8Array(0) };
  for (let i = 1; i < pts.length; i++) {
    const [a, b] = [pts[i - 1], pts[i]];
    const opts = { ...images.defaultApplyOptions(), snapshots: [...snaps] };
    const r = images.apply(dev, read(c, `diff/${a}..${b}.diff`), opts);
    assert.equal(r.endSnap, b === 'head' ? undefined : b);
    assert.equal(sha(dev.bytes), recordedSha(m, `raw/${b}.raw`), `${c}: ${a}..${b}`);
    if (r.endSnap) snaps.push(r.endSnap);
    content[b] = Uint8Array.from(dev.bytes);
  }
  return { content, objectSize: BigInt(img.object_size) };
}

test('apply each chain onto a device in memory, export-diff back', () => {
  let whole = 0;
  for (const c of CASES) {
    const { content, objectSize } = chain(c);
    const m = manifest(c);
    for (const t of Object.keys(content).filter((p) => p !== '0')) {
      const o = { ...images.defaultExportOptions(), objectSize, wholeObject: true };
      if (t !== 'head') o.toSnap = t;
      const r = images.exportDiff(undefined, new Device(content[t]), o);
      const dev = new Device();
      images.apply(dev, r.diff, images.defaultApplyOptions());
      assert.deepEqual(dev.bytes, content[t], `${c}: 0..${t}`);
      if (sha(r.diff) === recordedSha(m, `diff/0..${t}.whole.diff`)) whole++;
    }
  }
  // rbd's own --whole-object bytes, where the CLI matches them (cli_corpus.rs).
  assert.ok(whole >= 5, `${whole} whole-object diffs identical to rbd's`);
});

test('verified apply refuses a wrong base and a corrupt payload', () => {
  const { content } = chain('basic-64k');
  const o = {
    ...images.defaultExportOptions(),
    fromSnap: 's1', toSnap: 's2', objectSize: 65536n, integrity: true,
  };
  const sealed = images.exportDiff(new Device(content.s1), new Device(content.s2), o).diff;
  const wrong = new Device(content.head);
  const e = failure(() => images.apply(wrong, sealed, images.defaultApplyOptions()));
  assert.equal(e.kind, 'wrong-base');
  assert.deepEqual(wrong.calls.filter((c) => c[0] !== 'read'), []);
  const ok = new Device(content.s1);
  assert.equal(images.apply(ok, sealed, images.defaultApplyOptions()).verified, 'full');
  assert.deepEqual(ok.bytes, content.s2);
  const bad = Uint8Array.from(sealed);
  bad[35 + 17] ^= 1; // the first record's payload (after f, t, s)
  const p = failure(() => images.apply(new Device(content.s1), bad, images.defaultApplyOptions()));
  assert.equal(p.kind, 'corrupt-payload');
  assert.equal(p.streamOffset, 35n);
  assert.equal(p.imageOffset, 50n);
});
