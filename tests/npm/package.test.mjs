// The npm package `rbdiff` as a user gets it: `npm pack` of web/pkg (built by
// scripts/build-web.sh with wasm-pack), `npm install ./rbdiff-x.y.z.tgz`
// (offline) into a fresh project, then `import … from 'rbdiff'` there, run
// on the real-rbd corpus (tests/fixtures/rbd-16.2.15). Expected values come
// from the corpus manifests and rbd's own merge-diff outputs.
//
// Run: scripts/test-web.sh, or after scripts/build-web.sh:
//   node --test tests/npm/package.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, createReadStream, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CORPUS = process.env.RBDIFF_CORPUS ?? resolve(ROOT, 'tests/fixtures/rbd-16.2.15');
const PKG = join(ROOT, 'web/pkg');
const CASES = ['basic-64k', 'grow', 'shrink', 'empty', 'discard-zero'];
const manifest = (c) => JSON.parse(readFileSync(join(CORPUS, c, 'manifest.json'), 'utf8'));
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

let tmp; let proj; let rb; let web; let tarball;

before(() => {
  assert.ok(existsSync(join(PKG, 'package.json')), 'web/pkg missing: run scripts/build-web.sh');
  assert.ok(existsSync(CORPUS), `corpus not found at ${CORPUS}`);
  tmp = mkdtempSync(join(tmpdir(), 'rbdiff-npm-'));
  const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', tmp], { cwd: PKG, encoding: 'utf8' }));
  tarball = packed[0];
  proj = join(tmp, 'app');
  mkdirSync(proj);
  writeFileSync(join(proj, 'package.json'), JSON.stringify({ name: 'backup-dashboard', private: true, type: 'module' }));
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', `../${tarball.filename}`], { cwd: proj, stdio: 'pipe' });
  // the user's modules: bare specifiers resolved from the project, as in an app
  writeFileSync(join(proj, 'app.mjs'), "export * from 'rbdiff';\n");
  writeFileSync(join(proj, 'web.mjs'), "export * from 'rbdiff/web';\n");
});

after(() => { if (tmp) rmSync(tmp, { recursive: true, force: true }); });

const load = async () => (rb ??= await import(pathToFileURL(join(proj, 'app.mjs'))));

test('the tarball is a complete package: name, version, types, README, wasm', async () => {
  const files = tarball.files.map((f) => f.path).sort();
  for (const f of ['README.md', 'index.d.ts', 'index.js', 'node.d.ts', 'node.js', 'package.json', 'rbdiff_web.d.ts', 'rbdiff_web.js', 'rbdiff_web_bg.wasm']) {
    assert.ok(files.includes(f), `${f} in the tarball`);
  }
  const cargo = readFileSync(join(ROOT, 'Cargo.toml'), 'utf8');
  const version = /\[workspace\.package\][^[]*?version = "([^"]+)"/.exec(cargo)[1];
  assert.equal(tarball.name, 'rbdiff');
  assert.equal(tarball.version, version);
  const installed = join(proj, 'node_modules/rbdiff');
  assert.equal(JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8')).version, version);
  const m = await load();
  assert.equal(m.version(), version);
  // every function the typings declare exists at run time (both entries)
  for (const [dts, mod] of [['node.d.ts', m], ['index.d.ts', await import(pathToFileURL(join(proj, 'web.mjs')))]]) {
    const text = readFileSync(join(installed, dts), 'utf8');
    const names = [...text.matchAll(/^export function (\w+)/gm)].map((x) => x[1]);
    assert.ok(names.length >= 5, `${dts} declares the API`);
    for (const n of names) assert.equal(typeof mod[n], 'function', `${dts}: ${n}`);
  }
  const readme = readFileSync(join(installed, 'README.md'), 'utf8');
  assert.match(readme, /import \{[^}]*inspect[^}]*\} from 'rbdiff'/);
});

/** Asserts a summary's diff equals a manifest diff entry. */
function assertDiff(got, d, label) {
  assert.equal(got.from_snap, d.from_snap ?? null, `${label}: from`);
  assert.equal(got.to_snap, d.to_snap ?? null, `${label}: to`);
  assert.equal(got.size, d.size, `${label}: size`);
  assert.equal(got.n_w, d.n_w, `${label}: n_w`);
  assert.equal(got.n_z, d.n_z, `${label}: n_z`);
  assert.equal(got.w_bytes, d.w_bytes, `${label}: w_bytes`);
  assert.equal(got.z_bytes, d.z_bytes, `${label}: z_bytes`);
  assert.deepEqual(got.header_tags, d.header_tags, `${label}: header tags`);
  assert.equal(got.stream_bytes, d.stream_bytes, `${label}: stream bytes`);
  assert.deepEqual(got.records.map((r) => [r.tag, r.offset, r.length]), d.records.map((r) => r.slice(0, 3)), `${label}: records`);
}

test('inspect: every corpus diff, from a path, a Node Readable, a web ReadableStream, a Blob and chunks', async () => {
  const { inspect } = await load();
  const kinds = [
    ['path', (p) => p],
    ['Node Readable', (p) => createReadStream(p, { highWaterMark: 4093 })],
    ['web ReadableStream', (p) => Readable.toWeb(createReadStream(p))],
    ['Blob', (p) => new Blob([readFileSync(p)])],
    ['Uint8Array chunks', (p) => { const b = readFileSync(p); const n = 777; return Array.from({ length: Math.ceil(b.length / n) }, (_, i) => b.subarray(i * n, (i + 1) * n)); }],
  ];
  let n = 0;
  for (const c of CASES) {
    for (const [rel, v] of Object.entries(manifest(c).files)) {
      if (!v.diff || !rel.endsWith('.diff')) continue;
      const [kind, make] = kinds[n++ % kinds.length];
      const s = await inspect(make(join(CORPUS, c, rel)));
      const label = `${c}/${rel} (${kind})`;
      assert.equal(s.valid, true, `${label}: ${s.error?.message}`);
      assert.equal(s.format, v.diff.format === 2 ? 'diff-v2' : 'diff-v1', label);
      assert.equal(s.stream_bytes, v.size, `${label}: bytes read`);
      assertDiff(s.diffs[0], v.diff, label);
    }
  }
  assert.ok(n >= 60, `inspected ${n} diffs`);
});

test('inspect: an image v2 export (header, metadata, every embedded diff)', async () => {
  const { inspect } = await load();
  const m = manifest('basic-64k');
  const img = m.images['basic-64k'];
  const e = m.files['export/image.v2'].export_v2;
  const s = await inspect(join(CORPUS, 'basic-64k/export/image.v2'));
  assert.equal(s.valid, true);
  assert.equal(s.format, 'image-v2');
  assert.equal(s.image.order, img.order);
  assert.equal(s.image.features, img.features);
  assert.deepEqual(Object.fromEntries(s.image.meta.map((x) => [x.key, x.value])), img.image_meta);
  assert.equal(s.diff_count, e.diff_count);
  assert.equal(s.diffs.length, e.diffs.length);
  e.diffs.forEach((d, i) => {
    assert.equal(s.diffs[i].to_snap, d.to_snap ?? null, `diff ${i}`);
    assert.equal(s.diffs[i].n_w, d.n_w, `diff ${i}`);
    assert.equal(s.diffs[i].n_z, d.n_z, `diff ${i}`);
  });
});

test('validate: invalid streams are rejected with their stream offset and kind', async () => {
  const { validate, RbdiffError } = await load();
  const im = manifest('import-diff');
  // cut inside the first w record's payload: the error is at the cut
  const cut = im.files['inputs/truncated-in-data.diff'].size;
  await assert.rejects(validate(join(CORPUS, 'import-diff/inputs/truncated-in-data.diff')), (e) => {
    assert.ok(e instanceof RbdiffError);
    assert.equal(e.offset, cut);
    assert.equal(e.kind, 'unexpected-eof');
    assert.match(e.message, new RegExp(`while reading write data .* at stream offset ${cut}$`));
    assert.equal(e.summary.diffs[0].n_w, 1);
    return true;
  });
  // an unknown tag: where rbd saw it (manifest)
  const u = im.files['inputs/unknown-tag.diff'];
  const at = Number(/at (\d+)/.exec(u.parse_error)[1]);
  await assert.rejects(validate(readFileSync(join(CORPUS, 'import-diff/inputs/unknown-tag.diff'))),
    (e) => e.offset === at && e.kind === 'unknown-tag');
  // rbd-compatible policy skips unknown v1 tags, as rbd import-diff does
  const s = await validate(join(CORPUS, 'import-diff/inputs/unknown-tag.diff'), { policy: 'rbd' });
  assert.equal(s.valid, true);
  // only v1 accepted: an image v2 stream is refused at offset 0
  await assert.rejects(validate(join(CORPUS, 'basic-64k/export/image.v2'), { accept: 'diff-v1' }),
    (e) => e.offset === 0 && e.kind === 'bad-banner');
  // inspect reports instead of rejecting
  const { inspect } = await load();
  const bad = await inspect(join(CORPUS, 'import-diff/inputs/truncated-in-data.diff'));
  assert.equal(bad.valid, false);
  assert.equal(bad.error.offset, cut);
  await assert.rejects(validate(join(CORPUS, 'no/such/file.diff')), { code: 'ENOENT' });
  await assert.rejects(inspect(12345), TypeError);
});

/** Every rbd merge-diff output of the corpus: [case, inputs, output]. */
function rbdMerges() {
  const out = [];
  for (const c of CASES) {
    for (const [rel, v] of Object.entries(manifest(c).files)) {
      if (!rel.startsWith('merge/') || !rel.endsWith('.diff')) continue;
      const args = v.produced_by.split(' ').filter((a) => !a.startsWith('-'));
      assert.deepEqual(args.slice(0, 2), ['rbd', 'merge-diff'], `${c}/${rel}: ${v.produced_by}`);
      assert.equal(args[4], rel);
      out.push({ c, rel, inputs: args.slice(2, 4).map((p) => join(CORPUS, c, p)), sha: v.sha256 });
    }
  }
  return out;
}

test('merge: every rbd merge-diff output of the corpus, byte for byte (file, Writable, stream, bytes)', async () => {
  const { merge, mergeStream } = await load();
  const all = rbdMerges();
  assert.ok(all.length >= 20, `${all.length} merges`);
  let n = 0;
  for (const { c, rel, inputs, sha } of all) {
    const want = readFileSync(join(CORPUS, c, rel));
    assert.equal(sha256(want), sha, `${c}/${rel}: corpus file`);
    const label = `${c}/${rel}`;
    let got;
    switch (n++ % 4) {
      case 0: { // paths in, path out
        const out = join(tmp, 'merged.diff');
        const st = await merge(inputs, out);
        got = readFileSync(out);
        assert.equal(st.bytesWritten, got.length, label);
        break;
      }
      case 1: { // Node Readables in, Node Writable out
        const parts = [];
        const w = new Writable({ write(chunk, _e, cb) { parts.push(Buffer.from(chunk)); cb(); } });
        await merge(inputs.map((p) => createReadStream(p, { highWaterMark: 10000 })), w);
        got = Buffer.concat(parts);
        break;
      }
      case 2: { // a Node Readable of the merged stream
        const parts = [];
        for await (const b of mergeStream(inputs)) parts.push(Buffer.from(b));
        got = Buffer.concat(parts);
        break;
      }
      default: { // bytes in, bytes out (web WritableStream covered below)
        const r = await merge(inputs.map((p) => new Uint8Array(readFileSync(p))));
        got = Buffer.from(r.bytes);
      }
    }
    assert.ok(got.equals(want), `${label}: merged bytes equal rbd merge-diff's (${got.length} vs ${want.length})`);
  }
});

test('merge: N inputs, web streams in and out, v2 output', async () => {
  const { merge, inspect } = await load();
  const d = (n) => join(CORPUS, 'basic-64k/diff', n);
  // three diffs at once equal merging them pairwise
  const three = await merge([d('0..s1.diff'), d('s1..s2.diff'), d('s2..head.diff')]);
  const ab = await merge([d('0..s1.diff'), d('s1..s2.diff')]);
  const pair = await merge([ab.bytes, d('s2..head.diff')]);
  assert.ok(Buffer.from(three.bytes).equals(Buffer.from(pair.bytes)), '3-way = (a+b)+c');
  const s = await inspect(three.bytes);
  assert.equal(s.valid, true);
  assert.equal(s.diffs[0].from_snap, null);
  assert.equal(s.diffs[0].to_snap, null);
  assert.equal(s.diffs[0].n_w + s.diffs[0].n_z, three.records);
  // web ReadableStreams in, a web WritableStream out
  const parts = [];
  const ws = new WritableStream({ write(c) { parts.push(Buffer.from(c)); } });
  const st = await merge([d('0..s1.diff'), d('s1..s2.diff')].map((p) => Readable.toWeb(createReadStream(p))), ws);
  assert.ok(Buffer.concat(parts).equals(readFileSync(join(CORPUS, 'basic-64k/merge/0..s1+s1..s2.diff'))));
  assert.equal(st.bytesWritten, Buffer.concat(parts).length);
  // v2 output carries the same records
  const v2 = await merge([d('0..s1.diff'), d('s1..s2.diff')], undefined, { format: 'v2' });
  const s2 = await inspect(v2.bytes);
  assert.equal(s2.format, 'diff-v2');
  const v1 = (await inspect(join(CORPUS, 'basic-64k/merge/0..s1+s1..s2.diff'))).diffs[0];
  for (const k of ['n_w', 'n_z', 'w_bytes', 'z_bytes', 'size']) assert.equal(s2.diffs[0][k], v1[k], `v2 output: ${k}`);
});

test('merge: broken chains and bad inputs are rejected with input, offset and phase; no output left', async () => {
  const { merge, RbdiffError } = await load();
  const d = (n) => join(CORPUS, 'basic-64k/diff', n);
  const out = join(tmp, 'bad.diff');
  await assert.rejects(merge([d('0..s1.diff'), d('s2..head.diff')], out), (e) => {
    assert.ok(e instanceof RbdiffError);
    assert.equal(e.kind, 'snapshot-chain');
    assert.equal(e.input, 1);
    assert.match(e.message, /from-snapshot 's2' does not match the previous diff's to-snapshot 's1'/);
    return true;
  });
  assert.equal(existsSync(out), false, 'a failed merge leaves no output file');
  const cut = join(CORPUS, 'import-diff/inputs/truncated-in-data.diff');
  await assert.rejects(merge([d('0..s1.diff'), d('s1..s2.diff'), cut]), RbdiffError);
  await assert.rejects(merge([cut, d('s1..s2.diff')]), (e) => e.input === 0 && e.offset === 95 && e.phase === 'data');
  await assert.rejects(merge([]), (e) => e.kind === 'no-inputs');
});

test('the browser entry (rbdiff/web) works with the wasm bytes handed over, as a bundler would', async () => {
  const webApi = await import(pathToFileURL(join(proj, 'web.mjs')));
  const wasm = readFileSync(join(proj, 'node_modules/rbdiff/rbdiff_web_bg.wasm'));
  await webApi.ensureInit(wasm);
  const p = join(CORPUS, 'basic-64k/diff/s1..s2.diff');
  const s = await webApi.inspect(new Blob([readFileSync(p)]));
  assertDiff(s.diffs[0], manifest('basic-64k').files['diff/s1..s2.diff'].diff, 'web entry');
  const r = await webApi.merge([new Blob([readFileSync(join(CORPUS, 'basic-64k/diff/0..s1.diff'))]), new Blob([readFileSync(p)])]);
  assert.ok(Buffer.from(r.bytes).equals(readFileSync(join(CORPUS, 'basic-64k/merge/0..s1+s1..s2.diff'))));
});

test('TypeScript: a user\'s code type-checks against the installed typings (Node and browser entries)', () => {
  const tsc = join(ROOT, 'node_modules/typescript/bin/tsc');
  assert.ok(existsSync(tsc), 'typescript missing: run scripts/setup.sh (npm install)');
  mkdirSync(join(proj, 'node_modules/@types'), { recursive: true });
  rmSync(join(proj, 'node_modules/@types/node'), { recursive: true, force: true });
  execFileSync('cp', ['-r', join(ROOT, 'node_modules/@types/node'), join(proj, 'node_modules/@types/node')]);
  execFileSync('cp', ['-r', join(ROOT, 'node_modules/undici-types'), join(proj, 'node_modules/undici-types')]);
  writeFileSync(join(proj, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2022', 'dom', 'dom.iterable'], types: ['node'] },
    files: ['use-node.ts', 'use-web.ts'],
  }));
  writeFileSync(join(proj, 'use-node.ts'), `
import { createReadStream } from 'node:fs';
import { inspect, validate, merge, mergeStream, RbdiffError, Decoder, Merger, type Summary, type MergeStats } from 'rbdiff';
export async function main(): Promise<number> {
  const s: Summary = await inspect('a.diff', { policy: 'rbd', maxRecords: 10 });
  const n: number = s.diffs[0].n_w + (s.error?.offset ?? 0);
  await validate(createReadStream('a.diff')).catch((e: unknown) => e instanceof RbdiffError ? e.offset : null);
  const st: MergeStats = await merge(['a.diff', 'b.diff'], 'ab.diff', { format: 'v1' });
  const { bytes } = await merge([new Uint8Array(1), new Uint8Array(2)]);
  mergeStream(['a.diff']).pipe(process.stdout);
  const d = new Decoder({ policy: 'strict' }); d.push(bytes); JSON.parse(d.finish());
  const m = new Merger(2, 'v2'); m.pull(1024); const i: number = m.needInput;
  return n + st.bytesWritten + i;
}
`);
  writeFileSync(join(proj, 'use-web.ts'), `
import { inspect, merge, ensureInit, type DiffSummary } from 'rbdiff/web';
export async function onFile(file: File, a: Blob, b: Blob): Promise<string> {
  await ensureInit(new URL('rbdiff_web_bg.wasm', 'https://example.invalid/'));
  const s = await inspect(file, { onProgress: (n: number) => void n });
  const d: DiffSummary | undefined = s.diffs[0];
  const parts: Uint8Array[] = [];
  await merge([a, b], (c: Uint8Array) => { parts.push(c); });
  await merge([a.stream(), b], new WritableStream<Uint8Array>());
  return s.valid ? \`\${d?.to_snap}\` : \`\${s.error?.offset}\`;
}
`);
  execFileSync(process.execPath, [tsc, '-p', proj], { cwd: proj, stdio: 'pipe' });
  // and a mistake is caught: a summary field that does not exist
  writeFileSync(join(proj, 'bad.ts'), "import { inspect } from 'rbdiff';\nexport const x = inspect('a').then((s) => s.diffs[0].n_writes);\n");
  const cfg = JSON.parse(readFileSync(join(proj, 'tsconfig.json'), 'utf8'));
  writeFileSync(join(proj, 'tsconfig.bad.json'), JSON.stringify({ ...cfg, files: ['bad.ts'] }));
  assert.throws(() => execFileSync(process.execPath, [tsc, '-p', join(proj, 'tsconfig.bad.json')], { cwd: proj, stdio: 'pipe' }),
    (e) => /Property 'n_writes' does not exist on type 'DiffSummary'/.test(String(e.stdout)));
});

/** A v1 diff of `n` 1 MiB writes, every other MiB, from `from` to `to`. */
function writeDiff(path, n, from, to, fill) {
  const MiB = 1 << 20;
  const fd = openSync(path, 'w');
  const h = [Buffer.from('rbd diff v1\n', 'latin1')];
  for (const [t, name] of [['f', from], ['t', to]]) {
    if (name == null) continue;
    const b = Buffer.alloc(5 + name.length); b.write(t, 0, 'latin1'); b.writeUInt32LE(name.length, 1); b.write(name, 5, 'latin1'); h.push(b);
  }
  const s = Buffer.alloc(9); s.write('s', 0, 'latin1'); s.writeBigUInt64LE(BigInt(2 * n * MiB), 1); h.push(s);
  writeSync(fd, Buffer.concat(h));
  const payload = Buffer.alloc(MiB, fill);
  const rec = Buffer.alloc(17);
  for (let k = 0; k < n; k++) {
    rec.write('w', 0, 'latin1'); rec.writeBigUInt64LE(BigInt(2 * k * MiB), 1); rec.writeBigUInt64LE(BigInt(MiB), 9);
    writeSync(fd, rec); writeSync(fd, payload);
  }
  writeSync(fd, Buffer.from('e'));
  closeSync(fd);
}

test('merge memory is bounded: two 96 MiB diffs merge without holding them', async () => {
  const { merge, inspect } = await load();
  const a = join(tmp, 'big-a.diff');
  const b = join(tmp, 'big-b.diff');
  writeDiff(a, 96, null, 'x', 1);
  writeDiff(b, 96, 'x', 'y', 2);
  const out = join(tmp, 'big-ab.diff');
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  let peak = rss0;
  const st = await merge([a, b], out, { onProgress() { peak = Math.max(peak, process.memoryUsage().rss); } });
  const grew = (peak - rss0) / 2 ** 20;
  console.log(`# merged 2 x 96 MiB -> ${(st.bytesWritten / 2 ** 20).toFixed(1)} MiB; RSS grew ${grew.toFixed(1)} MiB`);
  assert.ok(grew < 64, `RSS grew ${grew.toFixed(1)} MiB merging 192 MiB of input`);
  const s = await inspect(out);
  assert.equal(s.valid, true);
  assert.equal(s.diffs[0].n_w, 96); // b's writes replace a's (same offsets)
  assert.equal(s.diffs[0].w_bytes, 96 * 2 ** 20);
  for (const f of [a, b, out]) rmSync(f);
  assert.deepEqual(readdirSync(tmp).filter((f) => f.startsWith('big-')), []);
});
