// rbdiff viewer, main thread: DOM only. All format logic runs in the worker's
// wasm module; this file asks it for summaries, table pages and coverage bins.

const $ = (id) => document.getElementById(id);
const ROW_H = 22;          // px per table row
const PAGE = 512;          // rows per page request
const MAX_PX = 4_000_000;  // spacer height cap; scroll position maps to rows proportionally
const HEX_BYTES = 256;     // payload bytes shown in the hex view

// ---------------------------------------------------------------- formatting
const fmtInt = (n) => (n ?? 0).toLocaleString('en-US');
const hex = (n) => '0x' + Math.floor(n).toString(16);
function fmtBytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let u = 0; let v = n;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${n} B` : `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[u]}`;
}
const bytesBoth = (n) => (n == null ? '—' : `${fmtInt(n)} B${n >= 1024 ? ` (${fmtBytes(n)})` : ''}`);
const snapName = (s, none) => (s == null ? none : s);
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
}

// ---------------------------------------------------------------- worker RPC
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
let reqSeq = 0;
const pending = new Map();
function call(type, payload = {}) {
  return new Promise((resolve, reject) => {
    const req = ++reqSeq;
    pending.set(req, { resolve, reject });
    worker.postMessage({ type, req, ...payload });
  });
}
const mergeListeners = new Map();

// ---------------------------------------------------------------- state
const files = [];          // { id, file, name, size, status, progress, summary, timing, sel, ... }
let current = null;        // selected entry
let nextId = 1;

worker.onmessage = (ev) => {
  const m = ev.data;
  switch (m.type) {
    case 'ready':
      document.body.dataset.ready = '1';
      document.body.dataset.version = m.version;
      break;
    case 'fatal':
      document.body.dataset.ready = 'error';
      $('empty').prepend(el('p', { class: 'err', text: `The decoder failed to load: ${m.error}` }));
      break;
    case 'reply': {
      const p = pending.get(m.req);
      if (!p) break;
      pending.delete(m.req);
      if (m.ok) p.resolve(m.result); else p.reject(new Error(m.error));
      break;
    }
    case 'progress': onProgress(m); break;
    case 'done': onDone(m); break;
    case 'merge-progress': mergeListeners.get(m.req)?.(m); break;
    default: break;
  }
};

function addFiles(list) {
  const added = [];
  for (const file of list) {
    const f = {
      id: nextId++, file, name: file.name, size: file.size, status: 'reading',
      progress: null, summary: null, timing: null, t0: performance.now(),
      selDiff: 0, selRow: -1, view: null, pages: new Map(), rows: 0,
    };
    files.push(f);
    added.push(f);
    // window.rbdiffRead = { mode: 'slices'|'stream'|'sync', depth, chunk } tunes reading (benchmarks)
    worker.postMessage({ type: 'open', id: f.id, file, read: window.rbdiffRead ?? undefined });
  }
  renderFileList();
  if (added.length) select(added[0]);
}

function onProgress(m) {
  const f = files.find((x) => x.id === m.id);
  if (!f) return;
  f.progress = JSON.parse(m.progress);
  f.liveMs = m.ms;
  f.rows = f.progress.rows;
  renderFileList();
  if (f === current) { renderProgress(); renderCards(); table.refresh(); scheduleCoverage(); }
}

function onDone(m) {
  const f = files.find((x) => x.id === m.id);
  if (!f) return;
  f.summary = JSON.parse(m.summary);
  f.progress = m.progress ? JSON.parse(m.progress) : f.progress;
  f.timing = m.timing;
  f.status = f.summary.valid ? 'valid' : 'invalid';
  f.rows = f.summary.rows ?? 0;
  f.pages.clear();
  renderFileList();
  if (f === current) renderAll();
  updateChain();
}

// ---------------------------------------------------------------- file list
function renderFileList() {
  const ul = $('file-list');
  ul.replaceChildren(...files.map((f) => {
    const fmt = (f.summary ? formatName(f.summary.format) : f.progress?.format) ?? '…';
    const badge = f.status === 'reading' ? 'reading' : f.status;
    const pct = f.status === 'reading' && f.progress && f.size ? ` ${Math.floor((100 * f.progress.bytes) / f.size)}%` : '';
    return el('li', {},
      el('button', {
        type: 'button', class: 'file' + (f === current ? ' sel' : ''), 'aria-current': f === current ? 'true' : null,
        'data-id': f.id, 'data-name': f.name, 'data-status': f.status, onclick: () => select(f),
      },
      el('span', { class: `dot ${badge}`, 'aria-hidden': 'true' }),
      el('span', { class: 'fname', text: f.name, title: f.name }),
      el('span', { class: 'fmeta', text: `${fmt} · ${fmtBytes(f.size)}${pct}` }),
      el('span', { class: `vbadge ${badge}`, text: badge })));
  }));
  $('file-count').textContent = files.length ? `(${files.length})` : '';
}

function select(f) {
  current = f;
  renderFileList();
  renderAll();
}

// ---------------------------------------------------------------- main view
function currentDiff(f = current) {
  const s = f?.summary;
  if (!s || !s.diffs?.length) return null;
  return s.diffs[Math.min(f.selDiff, s.diffs.length - 1)];
}

function renderAll() {
  $('empty').hidden = !!current;
  $('view').hidden = !current;
  $('export-json').disabled = !current || !current.summary;
  if (!current) return;
  $('v-name').textContent = current.name;
  renderProgress();
  renderVerdict();
  renderCards();
  renderDiffs();
  table.reset();
  scheduleCoverage();
  showHex(current.selRow);
}

function renderProgress() {
  const f = current;
  const box = $('v-progress');
  const t = $('v-timing');
  if (f.status === 'reading') {
    box.hidden = false;
    const done = f.progress?.bytes ?? 0;
    const pct = f.size ? (100 * done) / f.size : 0;
    box.querySelector('.fill').style.width = `${pct.toFixed(1)}%`;
    const mbps = f.liveMs ? done / 1e6 / (f.liveMs / 1000) : 0;
    box.querySelector('.ptext').textContent =
      `${fmtBytes(done)} / ${fmtBytes(f.size)} · ${pct.toFixed(0)}% · ${mbps.toFixed(0)} MB/s · ${fmtInt(f.progress?.rows ?? 0)} records`;
    t.textContent = '';
  } else {
    box.hidden = true;
    const tm = f.timing;
    if (tm && tm.ms != null) {
      const mbps = tm.bytes / 1e6 / Math.max(tm.ms / 1000, 1e-6);
      t.textContent = `decoded ${fmtBytes(tm.bytes)} in ${(tm.ms / 1000).toFixed(2)} s${tm.bytes >= 1 << 20 ? ` · ${mbps.toFixed(0)} MB/s` : ''}`;
      t.dataset.mbps = mbps.toFixed(1);
      t.dataset.ms = tm.ms.toFixed(1);
      t.dataset.wasmMemory = tm.wasmMemory;
      if (tm.workerHeap != null) t.dataset.workerHeap = tm.workerHeap;
      t.dataset.readMs = tm.readMs.toFixed(1);
      t.dataset.decodeMs = tm.decodeMs.toFixed(1);
    } else t.textContent = '';
  }
  const v = $('v-verdict');
  v.className = `badge ${f.status}`;
  v.textContent = f.status === 'reading' ? 'reading…' : f.status === 'valid' ? 'VALID' : 'INVALID';
}

function renderVerdict() {
  const f = current;
  const p = $('v-verdict-panel');
  p.replaceChildren();
  p.className = 'verdict-panel';
  const s = f.summary;
  if (!s) return;
  if (s.valid) {
    p.classList.add('ok');
    p.append(el('div', { class: 'v-line' }, el('strong', { text: '✓ Valid stream' }),
      el('span', { text: ` — decoded to the final 'e' record: ${fmtInt(s.stream_bytes)} bytes, ${fmtInt(s.diffs?.length ?? 0)} diff${s.diffs?.length === 1 ? '' : 's'}, no errors` })));
  } else {
    p.classList.add('bad');
    const off = s.error?.offset;
    p.append(el('div', { class: 'v-line' },
      el('strong', { text: '✗ Invalid stream' }),
      el('span', { text: off != null ? ' at stream offset ' : ' ' }),
      off != null ? el('span', { class: 'mono err-offset', id: 'v-error-offset', 'data-offset': off, text: `${fmtInt(off)} (${hex(off)})` }) : null,
      off != null ? el('button', { type: 'button', class: 'btn small', text: 'Show in table', onclick: () => table.scrollTo(s.error_row ?? -1, true) }) : null));
    p.append(el('div', { class: 'mono err-text', id: 'v-error-text', text: s.error_text ?? s.error?.message ?? 'unknown error' }));
    if (s.error?.kind) p.append(el('div', { class: 'muted', text: `kind: ${s.error.kind} · decoding stopped here; counts cover the bytes before it` }));
  }
  if (s.warnings_total > 0) {
    const ul = el('ul', { class: 'warnings' });
    for (const w of s.warnings) {
      ul.append(el('li', {}, el('button', {
        type: 'button', class: 'link mono', text: `${hex(w.offset)}`,
        onclick: async () => table.scrollTo(await call('rowAtStream', { id: f.id, at: w.offset }), true),
      }), el('span', { text: ` ${w.kind}: ${w.message}` })));
    }
    p.append(el('div', { class: 'warn-h', text: `⚠ ${fmtInt(s.warnings_total)} warning${s.warnings_total === 1 ? '' : 's'}${s.warnings_total > s.warnings.length ? ` (first ${s.warnings.length} shown)` : ''}` }), ul);
  }
}

function kv(k, label, value, title) {
  return [el('dt', { text: label }), el('dd', { 'data-k': k, title, class: 'mono' }, value)];
}

async function renderCards() {
  const f = current;
  const s = f.summary;
  const live = f.progress;
  const d = currentDiff();
  const cards = [];
  const fmt = (s ? formatName(s.format) : live?.format) ?? '…';
  cards.push(card('Stream', [
    ...kv('format', 'format', fmt),
    ...kv('stream_bytes', 'bytes', bytesBoth(s ? s.stream_bytes : live?.bytes ?? 0)),
    ...kv('diffs', 'diffs', s ? (s.diff_count != null ? `${s.diffs.length} of ${s.diff_count} declared` : String(s.diffs.length)) : String(live?.diffs ?? 0)),
    ...kv('trailing', 'trailing bytes', s ? fmtInt(s.trailing_bytes) : '…'),
    ...kv('unknown', 'unknown records', s ? fmtInt(s.unknown_records) : '…'),
  ]));
  const multi = s?.diffs?.length > 1;
  // rbdiff integrity extension (docs/integrity.md): checked by the wasm inspector.
  function integrityText(i) {
    if (!i) return '— (none: no base check possible)';
    if (i.ok) return `verified: ${fmtInt(i.entries)} record hashes + stream checksum` +
      (i.base_size == null ? '' : `, base ${fmtInt(i.base_size)} B`);
    return `MISMATCH: ${i.fault}`;
  }
  if (d || !s) {
    cards.push(card(multi ? `Header · diff #${d.index}` : 'Header', d ? [
      ...kv('from', 'from snapshot', snapName(d.from_snap, '— (image creation)')),
      ...kv('to', 'to snapshot', snapName(d.to_snap, '— (image head)')),
      ...kv('size', 'image size', bytesBoth(d.size)),
      ...kv('protected', 'protected', d.protected == null ? '— (no p record)' : d.protected ? 'yes' : 'no'),
      ...kv('header_tags', 'header records', d.header_tags.join(' ') || '—'),
      ...kv('integrity', 'integrity', integrityText(d.integrity)),
    ] : [el('dd', { class: 'muted', text: 'reading…' })]));
    const src = d ?? live ?? {};
    const flags = d ? [
      d.records_sorted ? 'sorted' : 'UNSORTED',
      d.records_overlap ? 'OVERLAPPING' : 'no overlap',
      d.records_beyond_size ? 'PAST SIZE' : 'within size',
    ] : [];
    cards.push(card(multi ? `Records · diff #${d.index}` : 'Records', [
      ...kv('n_w', 'data (w)', fmtInt(src.n_w)),
      ...kv('w_bytes', 'data bytes', bytesBoth(src.w_bytes ?? 0)),
      ...kv('n_z', 'zeros (z)', fmtInt(src.n_z)),
      ...kv('z_bytes', 'zeroed bytes', bytesBoth(src.z_bytes ?? 0)),
      ...(d ? kv('allzero', 'all-zero w', fmtInt(d.w_all_zero_records)) : []),
      ...(d ? kv('sorting', 'order', flags.join(' · ')) : []),
    ]));
  }
  if (s?.image) {
    const im = s.image;
    const feats = im.features != null ? await call('features', { bits: im.features }) : [];
    if (f !== current) return;
    cards.push(card('Image (export format 2)', [
      ...kv('order', 'order', im.order != null ? `${im.order} (${fmtBytes(2 ** im.order)} objects)` : '—'),
      ...kv('features', 'features', im.features != null ? `${im.features} = ${feats.join(', ')}` : '—'),
      ...kv('stripe_unit', 'stripe unit', im.stripe_unit != null ? bytesBoth(im.stripe_unit) : '—'),
      ...kv('stripe_count', 'stripe count', im.stripe_count != null ? String(im.stripe_count) : '—'),
      ...kv('meta', 'image-meta', im.meta.length ? im.meta.map((m) => `${m.key}=${m.value}`).join('\n') : '—'),
    ]));
  }
  if (f !== current) return;
  $('v-cards').replaceChildren(...cards);
}

function card(title, body) {
  return el('div', { class: 'card' }, el('h3', { text: title }), el('dl', {}, ...body));
}

function renderDiffs() {
  const f = current;
  const s = f.summary;
  const box = $('v-diffs');
  box.hidden = !(s && s.image);
  if (box.hidden) return;
  const body = $('v-diffs-body');
  body.replaceChildren(...s.diffs.map((d, i) => el('tr', {
    class: i === f.selDiff ? 'sel' : '', tabindex: '0', 'data-diff': i,
    onclick: () => selectDiff(i), onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); selectDiff(i); } },
  },
  el('td', { text: String(d.index) }),
  el('td', { class: 'mono', text: `${snapName(d.from_snap, '0')} → ${snapName(d.to_snap, 'head')}` }),
  el('td', { text: d.protected == null ? '—' : d.protected ? 'yes' : 'no' }),
  el('td', { class: 'num mono', text: fmtInt(d.size) }),
  el('td', { class: 'num mono', text: fmtInt(d.n_w) }),
  el('td', { class: 'num mono', text: fmtBytes(d.w_bytes) }),
  el('td', { class: 'num mono', text: fmtInt(d.n_z) }),
  el('td', { class: 'num mono', text: fmtBytes(d.z_bytes) }),
  el('td', { class: 'num mono', text: `${hex(d.stream_offset)}–${hex(d.stream_offset + d.stream_bytes)}` }),
  el('td', { text: `${d.records_sorted ? 'sorted' : 'unsorted'}${d.complete ? '' : ', incomplete'}` }))));
}

function selectDiff(i) {
  const f = current;
  f.selDiff = i;
  renderCards();
  renderDiffs();
  const first = f.summary?.diff_rows?.[i]?.first_row;
  if (first != null && f.summary.diff_rows[i].rows > 0) table.scrollTo(first, true);
  scheduleCoverage();
}

// ---------------------------------------------------------------- record table
const table = (() => {
  const scroller = $('t-scroll');
  const view = $('t-view');
  const spacer = $('t-spacer');
  let pool = [];
  let first = 0;
  let fetching = new Set();

  const total = () => (current ? current.rows + (current.summary?.error ? 1 : 0) : 0);
  const visible = () => Math.max(1, Math.floor(scroller.clientHeight / ROW_H));
  const contentH = () => Math.min(total() * ROW_H, MAX_PX);

  function layout() {
    const h = scroller.clientHeight;
    view.style.height = `${h}px`;
    spacer.style.height = `${Math.max(0, contentH() - h)}px`;
    const n = visible() + 1;
    while (pool.length < n) {
      const r = el('div', { class: 'row', role: 'row' });
      r.addEventListener('click', () => selectRow(Number(r.dataset.row)));
      pool.push(r);
      view.append(r);
    }
    while (pool.length > n) pool.pop().remove();
  }

  function firstFromScroll() {
    const maxScroll = Math.max(1, contentH() - scroller.clientHeight);
    const maxFirst = Math.max(0, total() - visible());
    if (total() * ROW_H <= MAX_PX) return Math.min(maxFirst, Math.floor(scroller.scrollTop / ROW_H));
    return Math.round((scroller.scrollTop / maxScroll) * maxFirst);
  }

  function rowData(f, r) {
    const page = f.pages.get(Math.floor(r / PAGE));
    if (!page) return null;
    const i = r % PAGE;
    if (i * 5 >= page.length) return null;
    return page.subarray(i * 5, i * 5 + 5);
  }

  async function fetchPage(f, p) {
    const key = `${f.id}:${p}`;
    if (fetching.has(key)) return;
    fetching.add(key);
    try {
      const data = await call('page', { id: f.id, from: p * PAGE, count: PAGE });
      // keep partial pages only until more rows arrive
      if (data.length === PAGE * 5 || f.status !== 'reading') f.pages.set(p, data);
      else { f.pages.set(p, data); f.partial = p; }
    } finally { fetching.delete(key); }
    if (f === current) paint();
  }

  function paint() {
    const f = current;
    if (!f) return;
    const n = total();
    const diffRows = f.summary?.diff_rows;
    const multi = (diffRows?.length ?? 0) > 1;
    $('t-count').textContent = `${fmtInt(f.rows)} record${f.rows === 1 ? '' : 's'}${f.summary?.rows_truncated ? ' (table capped; counts are complete)' : ''}`;
    for (let k = 0; k < pool.length; k++) {
      const r = first + k;
      const row = pool[k];
      row.dataset.row = r;
      row.classList.toggle('sel', r === f.selRow);
      if (r >= n) { row.className = 'row empty-row'; row.replaceChildren(); continue; }
      if (r === f.rows && f.summary?.error) {
        const e = f.summary.error;
        row.className = 'row error-row' + (r === f.selRow ? ' sel' : '');
        row.replaceChildren(
          el('span', { class: 'c-row', text: fmtInt(r) }),
          el('span', { class: 'c-at', text: hex(e.offset) }),
          el('span', { class: 'c-err', text: `✗ ${f.summary.error_text}` }));
        continue;
      }
      const d = rowData(f, r);
      if (!d) {
        row.className = 'row loading' + (r === f.selRow ? ' sel' : '');
        row.replaceChildren(el('span', { class: 'c-row', text: fmtInt(r) }));
        const p = Math.floor(r / PAGE);
        if (!f.pages.has(p)) fetchPage(f, p);
        continue;
      }
      const [at, kind, off, len] = d;
      let diffIdx = '';
      if (multi) {
        for (let i = diffRows.length - 1; i >= 0; i--) if (diffRows[i].first_row <= r) { diffIdx = String(diffRows[i].index); break; }
      }
      row.className = 'row' + (kind === 0 ? ' w' : ' z') + (r === f.selRow ? ' sel' : '');
      row.replaceChildren(
        el('span', { class: 'c-row', text: fmtInt(r) }),
        el('span', { class: 'c-at', text: hex(at) }),
        el('span', { class: 'c-diff', text: diffIdx }),
        el('span', { class: 'c-kind' }, el('b', { text: kind === 0 ? 'w' : 'z' })),
        el('span', { class: 'c-off', text: fmtInt(off) }),
        el('span', { class: 'c-len', text: fmtInt(len) }),
        el('span', { class: 'c-end', text: fmtInt(off + len) }));
    }
  }

  function onScroll() {
    first = firstFromScroll();
    paint();
  }

  function scrollTo(r, selectIt) {
    if (!current || r == null || r < 0) return;
    const n = total();
    r = Math.min(r, n - 1);
    const target = Math.max(0, r - Math.floor(visible() / 3));
    const maxFirst = Math.max(0, n - visible());
    const maxScroll = Math.max(0, contentH() - scroller.clientHeight);
    if (n * ROW_H <= MAX_PX) scroller.scrollTop = Math.min(target, maxFirst) * ROW_H;
    else scroller.scrollTop = maxFirst ? (Math.min(target, maxFirst) / maxFirst) * maxScroll : 0;
    first = Math.min(target, maxFirst);
    if (selectIt) selectRow(r); else paint();
  }

  function ensureVisible(r) {
    const vis = visible();
    if (r < first || r >= first + vis) scrollTo(r, false);
  }

  function reset() {
    fetching = new Set();
    layout();
    scroller.scrollTop = 0;
    first = 0;
    paint();
  }

  function refresh() {
    const f = current;
    if (f?.partial != null) { f.pages.delete(f.partial); f.partial = null; }
    layout();
    onScroll();
  }

  scroller.addEventListener('scroll', onScroll, { passive: true });
  scroller.addEventListener('keydown', (e) => {
    const f = current;
    if (!f) return;
    const n = total();
    let r = f.selRow < 0 ? first : f.selRow;
    const step = { ArrowDown: 1, ArrowUp: -1, PageDown: visible() - 1, PageUp: -(visible() - 1) }[e.key];
    if (step != null) r += step;
    else if (e.key === 'Home') r = 0;
    else if (e.key === 'End') r = n - 1;
    else if (e.key === 'Enter') { $('hex').focus(); e.preventDefault(); return; } else return;
    e.preventDefault();
    r = Math.max(0, Math.min(n - 1, r));
    selectRow(r);
    ensureVisible(r);
  });
  new ResizeObserver(() => { if (current) refresh(); }).observe(scroller);
  return { reset, refresh, paint, scrollTo, total };
})();

function selectRow(r) {
  const f = current;
  if (!f) return;
  f.selRow = r;
  table.paint();
  showHex(r);
  drawCoverageMarks();
}

// ---------------------------------------------------------------- hex view
async function showHex(r) {
  const f = current;
  const pre = $('hex');
  const cap = $('hex-cap');
  if (!f || r == null || r < 0) { pre.replaceChildren(); cap.textContent = 'select a record'; return; }
  let start; let end; let headEnd; let mark = -1; let caption;
  if (r === f.rows && f.summary?.error) {
    const off = f.summary.error.offset;
    start = Math.max(0, off - 64);
    end = Math.min(f.size, off + 64);
    headEnd = start;
    mark = off;
    caption = `around the error at stream offset ${fmtInt(off)}${off >= f.size ? ' (end of file)' : ''}`;
  } else {
    const d = await call('detail', { id: f.id, row: r });
    if (!d || f !== current || f.selRow !== r) return;
    start = d.at;
    headEnd = d.at + d.header_len;
    const show = d.kind === 'w' ? Math.min(d.length, HEX_BYTES) : 0;
    end = Math.min(f.size, headEnd + show);
    caption = d.kind === 'w'
      ? `record ${fmtInt(r)}: ${d.header_len} B header + first ${fmtInt(end - headEnd)} of ${fmtInt(d.length)} payload bytes (payload at ${hex(d.payload_at)})`
      : `record ${fmtInt(r)}: ${d.header_len} B zero record, no payload`;
    f.selDetail = d;
  }
  const bytes = new Uint8Array(await f.file.slice(start, end).arrayBuffer());
  if (f !== current || f.selRow !== r) return;
  cap.textContent = caption;
  const lines = [];
  const base = start - (start % 16);
  for (let lo = base; lo < end || (mark >= end && lo <= mark); lo += 16) {
    const line = el('div', { class: 'hl' }, el('span', { class: 'ho', text: lo.toString(16).padStart(10, '0') }));
    const hx = el('span', { class: 'hx' });
    const as = el('span', { class: 'ha' });
    for (let i = lo; i < lo + 16; i++) {
      const inRange = i >= start && i < end;
      const b = inRange ? bytes[i - start] : null;
      const cls = i === mark ? 'bm' : !inRange ? 'bn' : i < headEnd ? 'bh' : 'bp';
      hx.append(el('span', { class: cls, text: b == null ? (i === mark ? '⟂ ' : '   ').slice(0, 2) + ' ' : b.toString(16).padStart(2, '0') + ' ' }));
      as.append(el('span', { class: cls, text: b == null ? ' ' : b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '·' }));
    }
    line.append(hx, as);
    lines.push(line);
    if (lines.length > 40) break;
  }
  pre.replaceChildren(...lines);
}

// ---------------------------------------------------------------- coverage map
const cov = { seq: 0, timer: 0, lanes: [], drag: null, hover: null };
const GUTTER = 110;
const AXIS_H = 20;
const LANE_H = 26;
const LANE_GAP = 6;

function imageExtent(f) {
  const dr = f.summary?.diff_rows ?? [];
  let max = 0;
  for (const d of f.summary?.diffs ?? []) if (d.size != null) max = Math.max(max, d.size);
  for (const d of dr) if (d.size != null) max = Math.max(max, d.size);
  return max || 1;
}

function scheduleCoverage() {
  clearTimeout(cov.timer);
  cov.timer = setTimeout(drawCoverage, current?.status === 'reading' ? 250 : 0);
}

function lanesOf(f) {
  const s = f.summary;
  if (!s) return [];
  return (s.diff_rows ?? []).map((d, i) => {
    const ds = s.diffs?.[i];
    return { pos: i, index: d.index, size: d.size, label: ds ? `${snapName(ds.from_snap, '0')} → ${snapName(ds.to_snap, 'head')}` : `#${d.index}` };
  });
}

async function drawCoverage() {
  const f = current;
  const canvas = $('cov');
  if (!f) return;
  const seq = ++cov.seq;
  const lanes = lanesOf(f);
  const ext = imageExtent(f);
  if (!f.view) f.view = { start: 0, end: ext };
  const { start, end } = f.view;
  const cssW = Math.max(200, canvas.parentElement.clientWidth);
  const cssH = AXIS_H + Math.max(1, lanes.length) * (LANE_H + LANE_GAP) + 4;
  const dpr = window.devicePixelRatio || 1;
  const bins = Math.max(1, Math.floor(cssW - GUTTER - 8));
  const data = await Promise.all(lanes.map((l) => call('coverage', { id: f.id, diff: l.pos, start, end, bins })));
  if (seq !== cov.seq || f !== current) return;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.floor(cssW * dpr);
  canvas.height = Math.floor(cssH * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, cssW, cssH);
  const x0 = GUTTER;
  const w = bins;
  const css = getComputedStyle(document.documentElement);
  const col = (n) => css.getPropertyValue(n).trim();
  // axis
  g.fillStyle = col('--muted');
  g.font = '11px ui-monospace, SFMono-Regular, Menlo, monospace';
  g.textBaseline = 'top';
  const span = end - start;
  const ticks = 6;
  for (let t = 0; t <= ticks; t++) {
    const x = x0 + (t / ticks) * w;
    const v = start + (t / ticks) * span;
    g.fillRect(Math.round(x), AXIS_H - 5, 1, 5);
    const label = fmtBytes(Math.round(v));
    const tw = g.measureText(label).width;
    g.fillText(label, Math.min(Math.max(x - tw / 2, x0), x0 + w - tw), 2);
  }
  cov.lanes = [];
  lanes.forEach((l, i) => {
    const y = AXIS_H + i * (LANE_H + LANE_GAP) + 2;
    cov.lanes.push({ ...l, y });
    g.fillStyle = i === f.selDiff ? col('--text') : col('--muted');
    g.font = '12px ui-monospace, SFMono-Regular, Menlo, monospace';
    g.textBaseline = 'middle';
    const lbl = l.label.length > 14 ? l.label.slice(0, 13) + '…' : l.label;
    g.fillText(lbl, 6, y + LANE_H / 2);
    // lane background: inside image size vs beyond
    g.fillStyle = col('--lane');
    g.fillRect(x0, y, w, LANE_H);
    if (l.size != null && l.size < end) {
      const xs = x0 + Math.max(0, ((l.size - start) / span) * w);
      g.fillStyle = col('--beyond');
      g.fillRect(xs, y, x0 + w - xs, LANE_H);
    }
    const d = data[i];
    const wc = col('--w'); const zc = col('--z');
    for (let b = 0; b < bins; b++) {
      const fw = d[b]; const fz = d[bins + b];
      if (fz > 0) { g.globalAlpha = Math.min(1, 0.4 + 0.6 * fz); g.fillStyle = zc; g.fillRect(x0 + b, y + LANE_H / 2, 1, LANE_H / 2); }
      if (fw > 0) { g.globalAlpha = Math.min(1, 0.4 + 0.6 * fw); g.fillStyle = wc; g.fillRect(x0 + b, y, 1, fz > 0 ? LANE_H / 2 : LANE_H); }
    }
    g.globalAlpha = 1;
    if (i === f.selDiff && lanes.length > 1) { g.strokeStyle = col('--accent'); g.strokeRect(x0 - 0.5, y - 0.5, w + 1, LANE_H + 1); }
  });
  cov.geom = { x0, w, start, end, bins, cssH };
  $('cov-range').textContent = `${fmtInt(Math.round(start))} – ${fmtInt(Math.round(end))} (${fmtBytes(span)} of ${fmtBytes(ext)})`;
  cov.base = g.getImageData(0, 0, canvas.width, canvas.height);
  drawCoverageMarks();
}

function drawCoverageMarks() {
  const f = current;
  const canvas = $('cov');
  if (!cov.base || !cov.geom || !f) return;
  const g = canvas.getContext('2d');
  g.putImageData(cov.base, 0, 0);
  const d = f.selDetail;
  if (!d || f.selRow < 0 || d.row !== f.selRow) return;
  const { x0, w, start, end } = cov.geom;
  const lane = cov.lanes.find((l) => l.index === d.diff) ?? cov.lanes[0];
  if (!lane) return;
  const a = x0 + ((d.offset - start) / (end - start)) * w;
  const b = x0 + ((d.offset + d.length - start) / (end - start)) * w;
  if (b < x0 || a > x0 + w) return;
  const dpr = window.devicePixelRatio || 1;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.strokeStyle = '#ffffff';
  g.lineWidth = 1.5;
  const xa = Math.max(x0, a); const xb = Math.min(x0 + w, Math.max(b, a + 2));
  g.strokeRect(xa - 1, lane.y - 2, xb - xa + 2, LANE_H + 4);
}

function covZoom(factor, centerFrac = 0.5) {
  const f = current;
  if (!f?.view) return;
  const ext = imageExtent(f);
  const { start, end } = f.view;
  const span = end - start;
  const ns = Math.min(ext, Math.max(64, span * factor));
  const c = start + span * centerFrac;
  let a = c - ns * centerFrac;
  a = Math.max(0, Math.min(ext - ns, a));
  f.view = { start: a, end: a + ns };
  drawCoverage();
}
function covPan(frac) {
  const f = current;
  if (!f?.view) return;
  const ext = imageExtent(f);
  const span = f.view.end - f.view.start;
  const a = Math.max(0, Math.min(ext - span, f.view.start + span * frac));
  f.view = { start: a, end: a + span };
  drawCoverage();
}
function covFit() { if (current) { current.view = null; drawCoverage(); } }

function covPoint(ev) {
  const g = cov.geom;
  if (!g) return null;
  const r = $('cov').getBoundingClientRect();
  const x = ev.clientX - r.left; const y = ev.clientY - r.top;
  const frac = (x - g.x0) / g.w;
  const lane = cov.lanes.find((l) => y >= l.y - LANE_GAP / 2 && y < l.y + LANE_H + LANE_GAP / 2);
  return { x, y, frac, offset: g.start + frac * (g.end - g.start), lane, inside: frac >= 0 && frac <= 1 };
}

{
  const c = $('cov');
  c.addEventListener('wheel', (e) => {
    const p = covPoint(e);
    if (!p?.inside) return;
    e.preventDefault();
    covZoom(e.deltaY > 0 ? 1.25 : 0.8, p.frac);
  }, { passive: false });
  c.addEventListener('mousedown', (e) => { const p = covPoint(e); if (p?.inside) cov.drag = { x: e.clientX, start: current.view.start, moved: false }; });
  window.addEventListener('mousemove', (e) => {
    if (cov.drag && current?.view && cov.geom) {
      const dx = e.clientX - cov.drag.x;
      if (Math.abs(dx) > 3) cov.drag.moved = true;
      if (cov.drag.moved) {
        const span = current.view.end - current.view.start;
        const ext = imageExtent(current);
        const a = Math.max(0, Math.min(ext - span, cov.drag.start - (dx / cov.geom.w) * span));
        current.view = { start: a, end: a + span };
        drawCoverage();
      }
    }
  });
  window.addEventListener('mouseup', async (e) => {
    const d = cov.drag;
    cov.drag = null;
    if (!d || d.moved || !current) return;
    const p = covPoint(e);
    if (!p?.inside || !p.lane) return;
    if (p.lane.pos !== current.selDiff) { current.selDiff = p.lane.pos; renderCards(); renderDiffs(); }
    const r = await call('rowAtImage', { id: current.id, diff: p.lane.pos, offset: Math.floor(p.offset) });
    if (r >= 0) table.scrollTo(r, true);
  });
  c.addEventListener('mousemove', (e) => {
    const tip = $('cov-tip');
    const p = covPoint(e);
    if (!p?.inside || !p.lane || !cov.geom) { tip.hidden = true; return; }
    const g = cov.geom;
    const bin = Math.floor(p.frac * g.bins);
    const a = g.start + (bin / g.bins) * (g.end - g.start);
    const b = g.start + ((bin + 1) / g.bins) * (g.end - g.start);
    tip.hidden = false;
    tip.textContent = `${p.lane.label} · ${fmtInt(Math.floor(a))} – ${fmtInt(Math.ceil(b))}  (${fmtBytes(b - a)} per pixel) · click: find record`;
    tip.style.left = `${Math.min(p.x + 12, c.clientWidth - 320)}px`;
    tip.style.top = `${p.y + 14}px`;
  });
  c.addEventListener('mouseleave', () => { $('cov-tip').hidden = true; });
  c.addEventListener('dblclick', covFit);
  c.addEventListener('keydown', (e) => {
    const k = e.key;
    if (k === '+' || k === '=') covZoom(0.5);
    else if (k === '-' || k === '_') covZoom(2);
    else if (k === 'ArrowLeft') covPan(-0.2);
    else if (k === 'ArrowRight') covPan(0.2);
    else if (k === '0') covFit();
    else if (k === 'ArrowDown' || k === 'ArrowUp') {
      const n = cov.lanes.length;
      if (n > 1) selectDiff((current.selDiff + (k === 'ArrowDown' ? 1 : n - 1)) % n);
    } else return;
    e.preventDefault();
  });
  $('cov-in').addEventListener('click', () => covZoom(0.5));
  $('cov-out').addEventListener('click', () => covZoom(2));
  $('cov-fit').addEventListener('click', covFit);
  new ResizeObserver(() => { if (current) scheduleCoverage(); }).observe(c.parentElement);
}

// ---------------------------------------------------------------- chain + merge
let chainPlan = null;
let mergeUrl = null;
async function updateChain() {
  const diffs = files.filter((f) => f.summary);
  const box = $('chain');
  const candidates = diffs.filter((f) => f.summary.format !== 'image-v2');
  if (candidates.length < 2 || files.some((f) => f.status === 'reading')) {
    box.hidden = candidates.length < 2;
    return;
  }
  box.hidden = false;
  const entries = candidates.map((f) => {
    const d = f.summary.diffs?.[0] ?? {};
    return {
      id: f.id, name: f.name, format: formatName(f.summary.format), diffs: f.summary.diffs?.length ?? 0,
      from: d.from_snap ?? null, to: d.to_snap ?? null, size: d.size ?? null, valid: !!f.summary.valid,
    };
  });
  chainPlan = await call('plan', { entries });
  const byId = (id) => files.find((f) => f.id === id);
  const ol = $('chain-order');
  ol.replaceChildren(...chainPlan.order.map((id, i) => {
    const f = byId(id);
    const d = f.summary.diffs[0];
    const link = chainPlan.links[i - 1];
    return el('li', { class: link && !link.names_match ? 'broken' : '' },
      el('span', { class: 'mono snaps', text: `${snapName(d.from_snap, '0')} → ${snapName(d.to_snap, 'head')}` }),
      el('span', { class: 'fname', text: f.name }),
      el('span', { class: 'muted mono', text: fmtBytes(d.size) }));
  }));
  const st = $('chain-status');
  st.className = 'chain-status ' + (chainPlan.ok ? 'ok' : 'bad');
  st.textContent = chainPlan.ok
    ? `✓ consistent chain ${snapName(chainPlan.from, '0')} → ${snapName(chainPlan.to, 'head')}, ${chainPlan.order.length} diffs`
    : `✗ ${chainPlan.problems.join('; ')}`;
  $('chain-notes').replaceChildren(...chainPlan.notes.map((n) => el('li', { text: n })));
  $('merge-btn').disabled = !chainPlan.ok;
}

function formatName(f) {
  return { 'diff-v1': 'rbd diff v1', 'diff-v2': 'rbd diff v2', 'image-v2': 'rbd image v2' }[f] ?? f ?? null;
}

$('merge-btn').addEventListener('click', async () => {
  if (!chainPlan?.ok) return;
  const btn = $('merge-btn');
  const st = $('merge-status');
  btn.disabled = true;
  st.replaceChildren(el('span', { text: 'merging…' }));
  const total = chainPlan.order.reduce((a, id) => a + files.find((f) => f.id === id).size, 0);
  const req = reqSeq + 1;
  mergeListeners.set(req, (m) => { st.textContent = `merging… ${fmtBytes(m.read)} / ${fmtBytes(total)} read, ${fmtBytes(m.written)} written`; });
  try {
    const r = await call('merge', { ids: chainPlan.order });
    if (mergeUrl) URL.revokeObjectURL(mergeUrl);
    mergeUrl = URL.createObjectURL(r.blob);
    const name = `${snapName(chainPlan.from, '0')}..${snapName(chainPlan.to, 'head')}.merged.diff`;
    const a = el('a', { href: mergeUrl, download: name, id: 'merge-download', class: 'btn primary', text: `Download ${name}` });
    st.replaceChildren(
      el('div', { class: 'ok', text: `✓ merged: ${fmtInt(r.records)} records, ${fmtInt(r.bytes_written)} bytes, image size ${fmtInt(r.size)} (${(r.ms / 1000).toFixed(2)} s)` }),
      a,
      el('button', { type: 'button', class: 'btn', text: 'Inspect result', onclick: () => addFiles([new File([r.blob], name)]) }));
  } catch (e) {
    st.replaceChildren(el('div', { class: 'err', id: 'merge-error', text: `✗ merge failed: ${e.message}` }));
  } finally {
    mergeListeners.delete(req);
    btn.disabled = !chainPlan?.ok;
  }
});

// ---------------------------------------------------------------- input
{
  const drop = $('drop');
  const input = $('file-input');
  const pick = () => input.click();
  $('open-btn').addEventListener('click', pick);
  drop.addEventListener('click', pick);
  drop.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); pick(); } });
  input.addEventListener('change', () => { addFiles([...input.files]); input.value = ''; });
  for (const t of ['dragenter', 'dragover']) {
    document.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  document.addEventListener('dragleave', (e) => { if (e.target === document.documentElement || e.target === drop) drop.classList.remove('over'); });
  document.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    const list = [...(e.dataTransfer?.files ?? [])];
    if (list.length) addFiles(list);
  });
  $('export-json').addEventListener('click', async () => {
    const f = current;
    if (!f?.summary) return;
    const text = await call('exportJson', { id: f.id });
    const a = el('a', { href: URL.createObjectURL(new Blob([text], { type: 'application/json' })), download: `${f.name}.summary.json` });
    document.body.append(a);
    a.click();
    a.remove();
  });
  $('goto').addEventListener('keydown', async (e) => {
    if (e.key !== 'Enter' || !current) return;
    const v = e.target.value.trim();
    const at = v.toLowerCase().startsWith('0x') ? parseInt(v, 16) : parseInt(v.replace(/[,_\s]/g, ''), 10);
    if (!Number.isFinite(at)) return;
    const r = await call('rowAtStream', { id: current.id, at });
    table.scrollTo(Math.max(0, r), true);
  });
  document.addEventListener('keydown', (e) => {
    if (e.target.closest?.('input, textarea')) return;
    if (e.key === 'o' && !e.ctrlKey && !e.metaKey) { pick(); e.preventDefault(); }
  });
}

// exposed for tests and the console
window.rbdiffViewer = { files: () => files, current: () => current, call };
