// End-to-end tests of the browser viewer (index.html + web/) in real headless
// Chromium, driven by playwright-core. Expected values come from the real-rbd
// corpus manifests (tests/fixtures/rbd-16.2.15/*/manifest.json) and rbd's
// own merge-diff output; nothing about the page is mocked.
//
// Run: scripts/test-web.sh  (builds web/pkg first), or after a build:
//   node --test tests/e2e/viewer.test.mjs
// RBDIFF_E2E_BIG=0 skips the 2 GiB throughput test.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync, writeFileSync, closeSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CORPUS = process.env.RBDIFF_CORPUS ?? resolve(ROOT, 'tests/fixtures/rbd-16.2.15');
const OUT = join(ROOT, 'test-output');
const BIG = process.env.RBDIFF_E2E_BIG !== '0';
const manifest = (c) => JSON.parse(readFileSync(join(CORPUS, c, 'manifest.json'), 'utf8'));
const int = (n) => n.toLocaleString('en-US');
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

let server; let browser; let ctx; let base; let tmp;

before(async () => {
  assert.ok(existsSync(join(ROOT, 'web/pkg/index.js')), 'web/pkg missing: run scripts/build-web.sh');
  assert.ok(existsSync(CORPUS), `corpus not found at ${CORPUS}`);
  mkdirSync(OUT, { recursive: true });
  tmp = mkdtempSync(join(tmpdir(), 'rbdiff-e2e-'));
  server = spawn('python3', ['-u', '-m', 'http.server', '0', '--bind', '127.0.0.1', '--directory', ROOT],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  base = await new Promise((res, rej) => {
    server.stdout.on('data', (d) => { const m = /port (\d+)/.exec(String(d)); if (m) res(`http://127.0.0.1:${m[1]}`); });
    server.on('exit', (c) => rej(new Error(`http.server exited ${c}`)));
  });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--enable-precise-memory-info'],
  });
  ctx = await browser.newContext({ acceptDownloads: true, viewport: { width: 1440, height: 900 } });
});

after(async () => {
  await ctx?.close();
  await browser?.close();
  server?.kill();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

async function openPage() {
  const page = await ctx.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await page.goto(`${base}/index.html`);
  await page.waitForSelector('body[data-ready="1"]', { timeout: 20000 });
  page.errors = errors;
  return page;
}

/** Drops files on the drop zone through a real DataTransfer drop event. */
async function dropFiles(page, paths) {
  const files = paths.map((p) => ({ name: p.split('/').pop(), b64: readFileSync(p).toString('base64') }));
  await page.evaluate((files) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bin = atob(f.b64);
      const u8 = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i++) u8[i] = bin.charCodeAt(i);
      dt.items.add(new File([u8], f.name));
    }
    const zone = document.getElementById('drop');
    for (const type of ['dragenter', 'dragover', 'drop']) {
      zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
    }
  }, files);
}

async function waitDecoded(page, name, timeout = 30000) {
  await page.waitForSelector(`.file[data-name="${name}"]:not([data-status="reading"])`, { timeout });
}

async function selectFile(page, name) {
  await page.click(`.file[data-name="${name}"]`);
  await page.waitForFunction((n) => document.getElementById('v-name').textContent === n, name);
}

const field = (page, k) => page.textContent(`#v-cards dd[data-k="${k}"]`);

/** Asserts the header and counts shown for the selected file equal a manifest diff summary. */
async function assertDiffShown(page, d, label) {
  assert.equal(await page.textContent('#v-verdict'), 'VALID', `${label}: verdict`);
  assert.equal(await field(page, 'format'), d.format === 2 ? 'rbd diff v2' : 'rbd diff v1', `${label}: format`);
  assert.equal(await field(page, 'from'), d.from_snap ?? '— (image creation)', `${label}: from`);
  assert.equal(await field(page, 'to'), d.to_snap ?? '— (image head)', `${label}: to`);
  assert.ok((await field(page, 'size')).startsWith(`${int(d.size)} B`), `${label}: size`);
  assert.equal(await field(page, 'n_w'), int(d.n_w), `${label}: n_w`);
  assert.equal(await field(page, 'n_z'), int(d.n_z), `${label}: n_z`);
  assert.ok((await field(page, 'w_bytes')).startsWith(`${int(d.w_bytes)} B`), `${label}: w_bytes`);
  assert.ok((await field(page, 'z_bytes')).startsWith(`${int(d.z_bytes)} B`), `${label}: z_bytes`);
  assert.equal(await field(page, 'header_tags'), d.header_tags.join(' '), `${label}: header tags`);
  assert.ok((await field(page, 'stream_bytes')).startsWith(`${int(d.stream_bytes)} B`), `${label}: stream bytes`);
  const nrec = d.n_w + d.n_z;
  assert.equal(await page.textContent('#t-count'), `${int(nrec)} record${nrec === 1 ? '' : 's'}`, `${label}: table count`);
}

function diffFiles(caseName) {
  const m = manifest(caseName);
  return Object.entries(m.files)
    .filter(([p, v]) => v.diff && p.endsWith('.diff') && existsSync(join(CORPUS, caseName, p)))
    .map(([p, v]) => ({ path: join(CORPUS, caseName, p), name: p.split('/').pop(), rel: p, d: v.diff }));
}

test('real rbd diffs dropped through a DataTransfer show the manifest header and counts', async () => {
  const page = await openPage();
  const list = diffFiles('basic-64k');
  assert.ok(list.length >= 12, 'basic-64k diffs');
  // names repeat across diff/ and merge/; drop the diff/ set
  const set = list.filter((f) => f.rel.startsWith('diff/'));
  await dropFiles(page, set.map((f) => f.path));
  for (const f of set) {
    await waitDecoded(page, f.name);
    await selectFile(page, f.name);
    await assertDiffShown(page, f.d, `basic-64k/${f.rel}`);
    // every record of the manifest is in the table, in order (first page)
    const rows = await page.$$eval('#t-view .row.w, #t-view .row.z', (rs) => rs.map((r) => [
      r.querySelector('.c-kind').textContent, r.querySelector('.c-off').textContent, r.querySelector('.c-len').textContent]));
    const want = f.d.records.slice(0, rows.length).map(([t, o, l]) => [t, int(o), int(l)]);
    assert.deepEqual(rows, want, `${f.rel}: table rows`);
  }
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('real rbd diffs picked with the file input (grow, shrink, empty, discard-zero)', async () => {
  const page = await openPage();
  let n = 0;
  for (const c of ['grow', 'shrink', 'empty', 'discard-zero']) {
    const set = diffFiles(c).filter((f) => f.rel.startsWith('diff/'));
    await page.setInputFiles('#file-input', set.map((f) => f.path));
    for (const f of set) {
      await waitDecoded(page, f.name);
      // names repeat between cases: the last dropped file with that name is this case's
      // (a locator, not an element handle: the list re-renders while the others decode)
      await page.locator(`.file[data-name="${f.name}"]`).last().click();
      await assertDiffShown(page, f.d, `${c}/${f.rel}`);
      n++;
    }
  }
  assert.ok(n >= 60, `checked ${n} files`);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('image v2 export shows options, metadata and every embedded diff', async () => {
  const page = await openPage();
  const m = manifest('basic-64k');
  const img = m.images['basic-64k'];
  const e = m.files['export/image.v2'].export_v2;
  await page.setInputFiles('#file-input', join(CORPUS, 'basic-64k/export/image.v2'));
  await waitDecoded(page, 'image.v2');
  assert.equal(await page.textContent('#v-verdict'), 'VALID');
  assert.equal(await field(page, 'format'), 'rbd image v2');
  assert.ok((await field(page, 'order')).startsWith(`${img.order} `));
  assert.equal(await field(page, 'features'), `${img.features} = ${img.feature_names.join(', ')}`);
  assert.ok((await field(page, 'stripe_unit')).startsWith(`${int(img.stripe_unit)} B`));
  assert.equal(await field(page, 'stripe_count'), String(img.stripe_count));
  assert.equal(await field(page, 'meta'), Object.entries(img.image_meta).map(([k, v]) => `${k}=${v}`).join('\n'));
  assert.equal(await field(page, 'diffs'), `${e.diff_count} of ${e.diff_count} declared`);
  const rows = await page.$$eval('#v-diffs-body tr', (trs) => trs.map((tr) => [...tr.children].map((td) => td.textContent)));
  assert.equal(rows.length, e.diffs.length);
  e.diffs.forEach((d, i) => {
    const r = rows[i];
    assert.equal(r[1], `${d.from_snap ?? '0'} → ${d.to_snap ?? 'head'}`, `diff ${i} names`);
    assert.equal(r[2], d.protected == null ? '—' : d.protected ? 'yes' : 'no', `diff ${i} protected`);
    assert.equal(r[3], int(d.size), `diff ${i} size`);
    assert.equal(r[4], int(d.n_w), `diff ${i} n_w`);
    assert.equal(r[6], int(d.n_z), `diff ${i} n_z`);
  });
  // choosing an embedded diff shows its header and counts
  for (let i = 0; i < e.diffs.length; i++) {
    await page.click(`#v-diffs-body tr[data-diff="${i}"]`);
    await page.waitForFunction((i) => document.querySelector(`#v-diffs-body tr[data-diff="${i}"]`).classList.contains('sel'), i);
    const d = e.diffs[i];
    assert.equal(await field(page, 'to'), d.to_snap ?? '— (image head)');
    assert.equal(await field(page, 'n_w'), int(d.n_w));
    assert.equal(await field(page, 'n_z'), int(d.n_z));
    assert.equal(await field(page, 'protected'), d.protected == null ? '— (no p record)' : d.protected ? 'yes' : 'no');
  }
  assert.equal(await page.textContent('#t-count'), `${int(e.diffs.reduce((a, d) => a + d.n_w + d.n_z, 0))} records`);
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a corrupt file shows the exact stream offset and the codec error, table scrolled to it', async () => {
  const page = await openPage();
  const im = manifest('import-diff');
  // truncated-in-data: the first N bytes of basic-64k 0..s1.diff, cut inside the first w record's data
  const src = manifest('basic-64k').files['diff/0..s1.diff'].diff;
  const cut = im.files['inputs/truncated-in-data.diff'].size;
  const headerLen = 12 + (src.to_snap != null ? 5 + src.to_snap.length : 0) + (src.from_snap != null ? 5 + src.from_snap.length : 0) + 9;
  const dataStart = headerLen + 17;
  const [, , firstLen] = src.records[0];
  assert.ok(cut > dataStart && cut < dataStart + firstLen, 'the cut is inside the first payload');
  await page.setInputFiles('#file-input', join(CORPUS, 'import-diff/inputs/truncated-in-data.diff'));
  await waitDecoded(page, 'truncated-in-data.diff');
  assert.equal(await page.textContent('#v-verdict'), 'INVALID');
  assert.equal(Number(await page.getAttribute('#v-error-offset', 'data-offset')), cut);
  const missing = firstLen - (cut - dataStart);
  assert.equal(await page.textContent('#v-error-text'),
    `unexpected end of stream while reading write data (${missing} more bytes needed) at stream offset ${cut}`);
  // the table holds the one record read and an error row after it
  assert.equal(await page.textContent('#t-count'), '1 record');
  await page.click('.verdict-panel button');
  const err = await page.waitForSelector('#t-view .row.error-row.sel');
  assert.ok((await err.textContent()).includes(`0x${cut.toString(16)}`));
  assert.ok(await err.isVisible());
  await page.waitForFunction(() => /around the error/.test(document.getElementById('hex-cap').textContent));
  await page.screenshot({ path: join(OUT, 'viewer-invalid.png'), fullPage: true });

  // unknown tag: the manifest says where rbd saw it
  const u = im.files['inputs/unknown-tag.diff'];
  const at = Number(/at (\d+)/.exec(u.parse_error)[1]);
  const tag = /'(.)'/.exec(u.parse_error)[1];
  await page.setInputFiles('#file-input', join(CORPUS, 'import-diff/inputs/unknown-tag.diff'));
  await waitDecoded(page, 'unknown-tag.diff');
  assert.equal(await page.textContent('#v-verdict'), 'INVALID');
  assert.equal(Number(await page.getAttribute('#v-error-offset', 'data-offset')), at);
  const text = await page.textContent('#v-error-text');
  assert.ok(text.startsWith(`unknown record tag '${tag}'`) && text.includes(`at stream offset ${at}`), text);
  // a truncated image v2 stream fails too
  await page.setInputFiles('#file-input', join(CORPUS, 'import-export-v2/inputs/trunc-diff.v2'));
  await waitDecoded(page, 'trunc-diff.v2');
  assert.equal(await page.textContent('#v-verdict'), 'INVALID');
  assert.ok((await page.textContent('#v-error-text')).startsWith('unexpected end of stream'));
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('integrity data carried by a diff is checked and shown; a flipped bit is flagged', async () => {
  const page = await openPage();
  // tests/data/sealed-*.diff: basic-64k s1 -> s2 exported with the integrity extension
  // (docs/integrity.md), written and checked by tests/tests/integrity.rs.
  for (const v of ['v1', 'v2']) {
    const name = `sealed-s1..s2.${v}.diff`;
    const path = join(ROOT, 'tests/data', name);
    await page.setInputFiles('#file-input', path);
    await waitDecoded(page, name);
    await selectFile(page, name);
    assert.equal(await page.textContent('#v-verdict'), 'VALID', name);
    const text = await field(page, 'integrity');
    assert.match(text, /^verified: \d+ record hashes \+ stream checksum, base 4,194,304 B$/, `${name}: ${text}`);
    // Flip one payload bit: the stream still decodes, the integrity check fails.
    const bytes = readFileSync(path);
    const bad = Buffer.from(bytes);
    const at = bytes.indexOf(Buffer.from('s2')) + 40; // inside the first records
    bad[at] ^= 0x04;
    const badPath = join(tmp, `flipped-${name}`);
    writeFileSync(badPath, bad);
    await page.setInputFiles('#file-input', badPath);
    await waitDecoded(page, `flipped-${name}`);
    await selectFile(page, `flipped-${name}`);
    if (await page.textContent('#v-verdict') === 'VALID') {
      assert.match(await field(page, 'integrity'), /^MISMATCH: /, `flipped ${name}`);
    }
  }
  // A plain rbd diff carries none.
  await page.setInputFiles('#file-input', join(CORPUS, 'basic-64k/diff/s1..s2.diff'));
  await waitDecoded(page, 's1..s2.diff');
  await selectFile(page, 's1..s2.diff');
  assert.match(await field(page, 'integrity'), /^— \(none/);
  await page.close();
});

test('two consecutive real diffs merge into the bytes rbd merge-diff wrote', async () => {
  const page = await openPage();
  const a = join(CORPUS, 'basic-64k/diff/0..s1.diff');
  const b = join(CORPUS, 'basic-64k/diff/s1..s2.diff');
  await dropFiles(page, [b, a]); // dropped out of order on purpose
  await waitDecoded(page, '0..s1.diff');
  await waitDecoded(page, 's1..s2.diff');
  await page.waitForSelector('#chain-status.ok');
  assert.equal(await page.textContent('#chain-status'), '✓ consistent chain 0 → s2, 2 diffs');
  const order = await page.$$eval('#chain-order .fname', (xs) => xs.map((x) => x.textContent));
  assert.deepEqual(order, ['0..s1.diff', 's1..s2.diff']);
  await page.click('#merge-btn');
  const link = await page.waitForSelector('#merge-download', { timeout: 30000 });
  const [download] = await Promise.all([page.waitForEvent('download'), link.click()]);
  const got = readFileSync(await download.path());
  const rbd = readFileSync(join(CORPUS, 'merge-diff/out/basic.0..s1+s1..s2.diff'));
  assert.equal(got.length, rbd.length, 'merged size');
  assert.ok(got.equals(rbd), 'merged bytes equal rbd merge-diff output');
  assert.equal(sha256(got), manifest('basic-64k').files['merge/0..s1+s1..s2.diff'].sha256);
  // the merged output can be inspected in place
  await page.click('text=Inspect result');
  await waitDecoded(page, '0..s2.merged.diff');
  assert.equal(await page.textContent('#v-verdict'), 'VALID');

  // a gap in the chain is reported and blocks the merge
  const page2 = await openPage();
  await dropFiles(page2, [a, join(CORPUS, 'basic-64k/diff/s2..head.diff')]);
  await waitDecoded(page2, 's2..head.diff');
  await page2.waitForSelector('#chain-status.bad');
  assert.match(await page2.textContent('#chain-status'), /0\.\.s1\.diff ends at 's1' but s2\.\.head\.diff starts at 's2'/);
  assert.equal(await page2.isDisabled('#merge-btn'), true);
  assert.deepEqual([...page.errors, ...page2.errors], []);
  await page.close();
  await page2.close();
});

test('summary JSON export, keyboard navigation and hex view', async () => {
  const page = await openPage();
  const p = join(CORPUS, 'basic-64k/diff/s1..s2.diff');
  const d = manifest('basic-64k').files['diff/s1..s2.diff'].diff;
  const bytes = readFileSync(p);
  await page.setInputFiles('#file-input', p);
  await waitDecoded(page, 's1..s2.diff');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
  const j = JSON.parse(readFileSync(await download.path(), 'utf8'));
  assert.equal(j.file, 's1..s2.diff');
  assert.equal(j.valid, true);
  assert.equal(j.format, 'diff-v1');
  assert.equal(j.diffs[0].from_snap, d.from_snap);
  assert.equal(j.diffs[0].to_snap, d.to_snap);
  assert.equal(j.diffs[0].size, d.size);
  assert.deepEqual(j.diffs[0].records.map((r) => [r.tag, r.offset, r.length]), d.records.map((r) => r.slice(0, 3)));

  // keyboard: focus the table, End selects the last record, Home the first
  await page.focus('#t-scroll');
  await page.keyboard.press('End');
  await page.waitForSelector('#t-view .row.sel');
  assert.equal(await page.textContent('#t-view .row.sel .c-row'), String(d.n_w + d.n_z - 1));
  await page.keyboard.press('Home');
  await page.waitForFunction(() => document.querySelector('#t-view .row.sel .c-row')?.textContent === '0');
  // the hex view shows the selected record's bytes, read from the file
  const wRow = d.records.findIndex((r) => r[0] === 'w');
  for (let i = 0; i < wRow; i++) await page.keyboard.press('ArrowDown');
  await page.waitForFunction((r) => document.querySelector('#t-view .row.sel .c-row')?.textContent === String(r), wRow);
  const at = parseInt(await page.textContent('#t-view .row.sel .c-at'), 16);
  await page.waitForFunction(() => /payload/.test(document.getElementById('hex-cap').textContent));
  const shown = await page.$$eval('#hex .hx span', (s) => s.filter((x) => x.className === 'bh' || x.className === 'bp').map((x) => parseInt(x.textContent, 16)));
  const want = [...bytes.subarray(at, at + 17 + Math.min(256, d.records[wRow][2]))];
  assert.deepEqual(shown, want);
  assert.equal(bytes[at], 'w'.charCodeAt(0)); // the table's stream offset points at the tag
  assert.deepEqual(page.errors, []);
  await page.close();
});

test('a million-row table stays fast', async () => {
  // 1,000,000 z records (v1): a small file with a big table
  const n = 1_000_000;
  const p = join(tmp, 'million.diff');
  const fd = openSync(p, 'w');
  const head = Buffer.alloc(12 + 9);
  head.write('rbd diff v1\n', 0, 'latin1');
  head.write('s', 12, 'latin1');
  head.writeBigUInt64LE(BigInt(n) * 8192n, 13);
  writeSync(fd, head);
  const rec = Buffer.alloc(17 * 10000);
  for (let k = 0; k < n; k += 10000) {
    for (let i = 0; i < 10000; i++) {
      rec.write('z', i * 17, 'latin1');
      rec.writeBigUInt64LE(BigInt(k + i) * 8192n, i * 17 + 1);
      rec.writeBigUInt64LE(4096n, i * 17 + 9);
    }
    writeSync(fd, rec);
  }
  writeSync(fd, Buffer.from('e'));
  closeSync(fd);
  const page = await openPage();
  const t0 = Date.now();
  await page.setInputFiles('#file-input', p);
  await waitDecoded(page, 'million.diff', 120000);
  const tDecode = Date.now() - t0;
  assert.equal(await page.textContent('#v-verdict'), 'VALID');
  assert.equal(await field(page, 'n_z'), int(n));
  assert.equal(await page.$$eval('#t-view .row', (r) => r.length) < 40, true, 'only visible rows are in the DOM');
  await page.focus('#t-scroll');
  const t1 = Date.now();
  await page.keyboard.press('End');
  await page.waitForFunction((last) => document.querySelector('#t-view .row.sel .c-off')?.textContent === last,
    int((n - 1) * 8192));
  const tEnd = Date.now() - t1;
  const t2 = Date.now();
  await page.fill('#goto', String(21 + 17 * 500000));
  await page.press('#goto', 'Enter');
  await page.waitForFunction((v) => document.querySelector('#t-view .row.sel .c-off')?.textContent === v, int(500000 * 8192));
  const tGoto = Date.now() - t2;
  console.log(`# million rows: decode+render ${tDecode} ms, jump to end ${tEnd} ms, go to offset ${tGoto} ms, DOM rows ${await page.$$eval('#t-view .row', (r) => r.length)}`);
  assert.deepEqual(page.errors, []);
  await page.close();
});

function rendererRss() {
  // renderer processes of the Chromium launched by this test (descendants of this node process)
  const me = process.pid;
  const parent = new Map();
  const cmd = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/status`, 'utf8');
      parent.set(Number(d), Number(/PPid:\s+(\d+)/.exec(st)[1]));
      cmd.set(Number(d), { st, cl: readFileSync(`/proc/${d}/cmdline`, 'utf8') });
    } catch { /* gone */ }
  }
  let rss = 0; let hwm = 0;
  for (const [pid, { st, cl }] of cmd) {
    if (!cl.includes('--type=renderer')) continue;
    let p = pid; let mine = false;
    for (let i = 0; i < 20 && p > 1; i++) { p = parent.get(p); if (p === me) { mine = true; break; } }
    if (!mine) continue;
    rss += Number(/VmRSS:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024;
    hwm = Math.max(hwm, Number(/VmHWM:\s+(\d+)/.exec(st)?.[1] ?? 0) * 1024);
  }
  return { rss, hwm };
}

/** Writes a v1 diff of about `bytes` bytes: 1 MiB w records with a 64 KiB z between them. */
function writeBigDiff(path, bytes) {
  const MiB = 1 << 20;
  const nW = Math.floor(bytes / MiB);
  const size = BigInt(nW) * BigInt(MiB + 65536);
  const fd = openSync(path, 'w');
  const head = Buffer.alloc(12 + 8 + 9);
  head.write('rbd diff v1\n', 0, 'latin1');
  head.write('t', 12, 'latin1'); head.writeUInt32LE(3, 13); head.write('big', 17, 'latin1');
  head.write('s', 20, 'latin1'); head.writeBigUInt64LE(size, 21);
  writeSync(fd, head);
  const payload = Buffer.alloc(MiB);
  for (let i = 0; i < MiB; i += 4) payload.writeUInt32LE((i * 2654435761) >>> 0, i);
  const hdr = Buffer.alloc(17 + 17);
  for (let k = 0; k < nW; k++) {
    const off = BigInt(k) * BigInt(MiB + 65536);
    hdr.write('w', 0, 'latin1'); hdr.writeBigUInt64LE(off, 1); hdr.writeBigUInt64LE(BigInt(MiB), 9);
    writeSync(fd, hdr, 0, 17);
    payload.writeUInt32LE(k, 0);
    writeSync(fd, payload);
    hdr.write('z', 17, 'latin1'); hdr.writeBigUInt64LE(off + BigInt(MiB), 18); hdr.writeBigUInt64LE(65536n, 26);
    writeSync(fd, hdr, 17, 17);
  }
  writeSync(fd, Buffer.from('e'));
  closeSync(fd);
  return { nW, size: Number(size), fileSize: statSync(path).size };
}

async function decodeBig(page, path, name) {
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Performance.enable');
  let peak = { rss: 0, jsHeap: 0, pageHeap: 0 };
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const r = rendererRss();
      const m = await cdp.send('Performance.getMetrics').catch(() => ({ metrics: [] }));
      const js = m.metrics.find((x) => x.name === 'JSHeapUsedSize')?.value ?? 0;
      const pm = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0).catch(() => 0);
      peak = { rss: Math.max(peak.rss, r.rss), jsHeap: Math.max(peak.jsHeap, js), pageHeap: Math.max(peak.pageHeap, pm) };
      await new Promise((res) => setTimeout(res, 150));
    }
  })();
  const t0 = Date.now();
  await page.setInputFiles('#file-input', path);
  await waitDecoded(page, name, 600000);
  const ms = Date.now() - t0;
  sampling = false;
  await sampler;
  await selectFile(page, name);
  const timing = await page.$eval('#v-timing', (t) => ({ ...t.dataset }));
  await cdp.detach();
  return { ms, peak, timing, hwm: rendererRss().hwm };
}

test('a generated 2 GiB diff decodes in the worker with flat memory (throughput printed)', { skip: !BIG, timeout: 900000 }, async () => {
  const small = join(tmp, 'gen-256m.diff');
  const big = join(tmp, 'gen-2g.diff');
  const s = writeBigDiff(small, 256 << 20);
  const g = writeBigDiff(big, 2 * 1024 ** 3);
  assert.ok(g.fileSize > 2 * 1024 ** 3, '≥ 2 GiB');
  const page = await openPage();
  // A first, unmeasured decode: one-time costs of the page (wasm compile,
  // JIT, table layout) then land in neither measured run. Without it the
  // first run's peak alone moved by ±40 MB, enough to swing the ratio.
  const warm = join(tmp, 'gen-256m-warm.diff');
  linkSync(small, warm);
  await decodeBig(page, warm, 'gen-256m-warm.diff');
  const r1 = await decodeBig(page, small, 'gen-256m.diff');
  assert.equal(await page.textContent('#v-verdict'), 'VALID');
  const r2 = await decodeBig(page, big, 'gen-2g.diff');
  assert.equal(await page.textContent('#v-verdict'), 'VALID');
  assert.equal(await field(page, 'n_w'), int(g.nW));
  assert.equal(await field(page, 'n_z'), int(g.nW));
  assert.ok((await field(page, 'w_bytes')).startsWith(`${int(g.nW * 1048576)} B`));
  const mb = (x) => (x / 1e6).toFixed(1);
  for (const [label, r, f] of [['256 MiB', r1, s], ['2 GiB', r2, g]]) {
    console.log(`# ${label} (${int(f.fileSize)} B): wall ${r.ms} ms = ${mb(f.fileSize / (r.ms / 1000))} MB/s (page-observed); worker ${Number(r.timing.ms).toFixed(0)} ms = ${r.timing.mbps} MB/s; read ${Number(r.timing.readMs).toFixed(0)} ms / decode ${Number(r.timing.decodeMs).toFixed(0)} ms; wasm memory ${mb(Number(r.timing.wasmMemory))} MB; worker JS heap ${r.timing.workerHeap ? `${mb(Number(r.timing.workerHeap))} MB` : 'n/a'}; peak renderer RSS ${mb(r.peak.rss)} MB; peak page JS heap ${mb(r.peak.jsHeap)} MB (CDP) / ${mb(r.peak.pageHeap)} MB (performance.memory)`);
  }
  // renderer memory is flat with file size: the worker reads into reused
  // buffers (with a fresh ArrayBuffer per 8 MiB slice, garbage piled up until
  // a late major GC: 519 MB at 256 MiB vs 703 MB at 2 GiB, 1.35x)
  const ratio = r2.peak.rss / r1.peak.rss;
  console.log(`# peak renderer RSS: 2 GiB ${mb(r2.peak.rss)} MB / 256 MiB ${mb(r1.peak.rss)} MB = ${ratio.toFixed(3)} (limit 1.2)`);
  assert.ok(ratio <= 1.2, `renderer RSS grows with the file: ${mb(r1.peak.rss)} MB -> ${mb(r2.peak.rss)} MB`);
  // the decoder never holds the file: wasm memory stays small and does not grow 8x with the file
  assert.ok(Number(r2.timing.wasmMemory) < 128 * 2 ** 20, `wasm memory ${r2.timing.wasmMemory}`);
  assert.ok(Number(r2.timing.wasmMemory) <= Number(r1.timing.wasmMemory) * 2, 'wasm memory independent of file size');
  assert.deepEqual(page.errors, []);
  await page.close();
  rmSync(big, { force: true });
});

test('screenshot of the viewer with real files loaded', async () => {
  const page = await openPage();
  await page.setInputFiles('#file-input', [
    join(CORPUS, 'basic-64k/diff/0..s1.diff'),
    join(CORPUS, 'basic-64k/diff/s1..s2.diff'),
    join(CORPUS, 'basic-64k/export/image.v2'),
  ]);
  await waitDecoded(page, 'image.v2');
  await waitDecoded(page, 's1..s2.diff');
  await page.waitForSelector('#chain-status.ok');
  await selectFile(page, 'image.v2');
  await page.click('#v-diffs-body tr[data-diff="1"]');
  await page.waitForSelector('#t-view .row.sel');
  await page.waitForFunction(() => /record/.test(document.getElementById('hex-cap').textContent));
  await page.waitForTimeout(300);
  const buf = await page.screenshot({ path: join(OUT, 'viewer.png'), fullPage: true });
  assert.ok(buf.length > 20000);
  assert.deepEqual(page.errors, []);
  await page.close();
});
