// tfrec web demo: the export's model.onnx in onnxruntime-web (wasm), top-10 items
// for a chosen user (a user-item scorer scores every item; seen items are left out
// when the export's vocab has them) or next items for a typed session (GRU4Rec).
// Written by `tfrec export --web-demo` next to an export:
//   <version>/web/index.html, demo.mjs, data.json, ort/ (onnxruntime-web files)
// Serve <version>/ over http (wasm does not load from file://) and open web/.
// The page checks model.onnx and data.json against the sha256 in ../manifest.json
// before using them (SubtleCrypto: http://localhost or https); a modified file is
// an error naming it.

import * as ort from './ort/ort.wasm.min.mjs';

const K = 10;
const $ = (id) => document.getElementById(id);

function setStatus(state, text) {
  $('status').dataset.state = state;
  $('status').textContent = text;
  document.body.dataset.state = state;
}

/** Indices of the k best scores, `exclude` left out; ties keep the lower index
 * (numpy's stable argsort of -scores, as tfrec's Python top_k). */
export function topK(scores, k, exclude) {
  const order = [];
  for (let i = 0; i < scores.length; i += 1) {
    if (!exclude.has(i) && Number.isFinite(scores[i])) order.push(i);
  }
  order.sort((a, b) => (scores[b] - scores[a]) || (a - b));
  return order.slice(0, k);
}

function render(data, scores, picked) {
  const body = $('results');
  body.replaceChildren();
  picked.forEach((index, rank) => {
    const tr = document.createElement('tr');
    tr.className = 'rec';
    Object.assign(tr.dataset, {
      rank: String(rank + 1),
      itemIndex: String(index),
      itemId: data.items[index],
      score: String(scores[index]),
    });
    const title = data.titles ? data.titles[index] : '';
    for (const [text, cls] of [[rank + 1, 'num'], [data.items[index], ''],
      [title, 'title'], [scores[index].toFixed(4), 'num']]) {
      const td = document.createElement('td');
      td.textContent = String(text);
      if (cls) td.className = cls;
      if (cls === 'title' && !data.titles) td.hidden = true;
      tr.append(td);
    }
    body.append(tr);
  });
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The bytes of `rel` (relative to the version folder), checked against the
 * manifest's size and sha256 (`optional`: an unlisted file is returned as is).
 * Without SubtleCrypto (plain http on a non-local host) only the size is
 * checked. */
async function verified(manifest, rel, { optional = false } = {}) {
  const want = manifest.checksums?.[rel];
  if (!want && !optional) {
    throw new Error(`${rel} is not listed in manifest.json's checksums; re-export`);
  }
  const response = await fetch(new URL(`../${rel}`, window.location.href));
  if (!response.ok) throw new Error(`${rel}: HTTP ${response.status}`);
  const bytes = await response.arrayBuffer();
  if (!want) return bytes;
  const sha256 = globalThis.crypto?.subtle
    ? hex(await crypto.subtle.digest('SHA-256', bytes)) : want.sha256;
  if (bytes.byteLength !== want.size || sha256 !== want.sha256) {
    throw new Error(`${rel} was modified or is corrupt: its sha256 ${sha256.slice(0, 12)}... `
      + `(${bytes.byteLength} bytes) differs from manifest.json's ${want.sha256.slice(0, 12)}... `
      + `(${want.size} bytes); re-export the model`);
  }
  return bytes;
}

async function main() {
  const manifest = await (await fetch('../manifest.json')).json();
  // A page added to an already published version (export.webdemo) is not listed.
  const raw = await verified(manifest, 'web/data.json', { optional: true });
  const data = JSON.parse(new TextDecoder().decode(raw));
  data.version = manifest.version;  // the number the version was published under
  const model = await verified(manifest, data.onnx.replace(/^\.\.\//, ''));
  ort.env.wasm.wasmPaths = new URL('./ort/', import.meta.url).href;
  // Without cross-origin isolation (COOP/COEP headers) wasm threads are off anyway.
  ort.env.wasm.numThreads = 1;
  const started = performance.now();
  const session = await ort.InferenceSession.create(
    new Uint8Array(model),
    { executionProviders: ['wasm'] },
  );
  const loadMs = performance.now() - started;
  const n = data.items.length;
  const itemIndex = new Map(data.items.map((id, i) => [id, i]));
  $('title').textContent = `${data.name} (version ${data.version})`;
  $('meta').textContent = `${data.keras_model_name}: ${n} items, output "${data.output}"; `
    + `onnxruntime-web ${ort.env.versions?.web ?? ''} (wasm), model loaded in ${loadMs.toFixed(0)} ms`
    + (globalThis.crypto?.subtle ? '; sha256 of the model checked against manifest.json' : '');

  if (!data.titles) document.querySelector('th.title').hidden = true;
  const params = new URLSearchParams(window.location.search);
  if (data.kind === 'user') {
    $('user-controls').hidden = false;
    const select = $('user');
    data.users.forEach((id, i) => select.add(new Option(id, String(i))));
    if (params.has('user') && data.users.includes(params.get('user'))) {
      select.value = String(data.users.indexOf(params.get('user')));
    }
    $('exclude-seen').disabled = !data.seen;
    if (!data.seen) $('exclude-seen').checked = false;
  } else {
    $('session-controls').hidden = false;
    $('session').value = params.get('session') ?? data.example_session.join(',');
  }

  async function recommend() {
    const t = performance.now();
    let feeds;
    let exclude;
    let what;
    if (data.kind === 'user') {
      const u = Number($('user').value);
      feeds = {
        user_id: new ort.Tensor('int64', new BigInt64Array(n).fill(BigInt(u)), [n]),
        item_id: new ort.Tensor('int64', BigInt64Array.from({ length: n }, (_, i) => BigInt(i)), [n]),
      };
      exclude = new Set();
      if (data.seen && $('exclude-seen').checked) {
        for (let j = data.seen.indptr[u]; j < data.seen.indptr[u + 1]; j += 1) {
          exclude.add(data.seen.indices[j]);
        }
      }
      what = `user ${data.users[u]}` + (exclude.size ? ` (${exclude.size} seen items left out)` : '');
    } else {
      const typed = $('session').value.split(',').map((s) => s.trim()).filter(Boolean);
      const unknown = typed.filter((id) => !itemIndex.has(id) || itemIndex.get(id) === 0);
      if (!typed.length || unknown.length) {
        throw new Error(typed.length ? `unknown item ids: ${unknown.join(', ')}` : 'type at least one item id');
      }
      const idx = typed.map((id) => itemIndex.get(id));
      feeds = {
        session_items: new ort.Tensor('int64', BigInt64Array.from(idx, BigInt), [1, idx.length]),
      };
      exclude = new Set([0, ...idx]);  // index 0 is padding; the session's own items
      what = `session ${typed.join(',')}`;
    }
    const out = await session.run(feeds);
    const scores = out[data.output].data;
    const picked = topK(scores, K, exclude);
    render(data, scores, picked);
    setStatus('done', `Top ${picked.length} for ${what} in ${(performance.now() - t).toFixed(1)} ms`);
  }

  $('recommend').disabled = false;
  $('query').addEventListener('submit', () => {
    setStatus('running', 'Scoring…');
    recommend().catch((err) => setStatus('error', `Error: ${err.message}`));
  });
  setStatus('ready', 'Ready: pick a query and press "Top 10".');
}

main().catch((err) => setStatus('error', `Error: ${err.message ?? err}`));
