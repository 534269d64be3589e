// Reading golden.json (export/golden.py) into onnxruntime tensors, and comparing
// outputs with the golden ones the way export/parity.py's `compare` does:
// an output passes when |x - ref| <= atol + rtol * |ref| everywhere, with the
// same dtype and shape. Shared by check_onnx.mjs (Node) and usable in a browser.

const FLOAT = { float32: Float32Array, float64: Float64Array };
const INT = {
  int8: Int8Array, int16: Int16Array, int32: Int32Array,
  uint8: Uint8Array, uint16: Uint16Array, uint32: Uint32Array,
};

function number(v) {
  // golden.json writes non-finite floats as strings.
  return typeof v === 'string' ? Number(v) : v;
}

/** The typed array (or string array) onnxruntime takes for a golden entry. */
export function typedValues(entry) {
  const { dtype, values } = entry;
  if (dtype === 'string') return values.map(String);
  if (dtype === 'int64') return BigInt64Array.from(values, (v) => BigInt(v));
  if (dtype === 'uint64') return BigUint64Array.from(values, (v) => BigInt(v));
  if (dtype === 'bool') return Uint8Array.from(values, (v) => (v ? 1 : 0));
  if (FLOAT[dtype]) return FLOAT[dtype].from(values, number);
  if (INT[dtype]) return INT[dtype].from(values);
  throw new Error(`golden.json: unsupported dtype ${dtype} (input ${entry.name})`);
}

/** An onnxruntime Tensor of a golden entry (`ort` is onnxruntime-node or -web). */
export function toTensor(ort, entry) {
  return new ort.Tensor(entry.dtype, typedValues(entry), entry.shape);
}

function asNumber(v) {
  return typeof v === 'bigint' ? Number(v) : Number(v);
}

/**
 * Compares onnxruntime outputs ({name: Tensor}) with golden.json outputs.
 * Returns {max_abs_diff, max_rel_diff, passed, problems}.
 */
export function compareOutputs(golden, got, { atol, rtol }) {
  const problems = [];
  let maxAbs = 0;
  let maxRel = 0;
  const want = Object.fromEntries(golden.outputs.map((o) => [o.name, o]));
  const gotNames = Object.keys(got).sort();
  const wantNames = Object.keys(want).sort();
  if (JSON.stringify(gotNames) !== JSON.stringify(wantNames)) {
    problems.push(`output names ${JSON.stringify(gotNames)} != ${JSON.stringify(wantNames)}`);
  }
  for (const name of wantNames) {
    if (!(name in got)) continue;
    const ref = want[name];
    const out = got[name];
    if (out.type !== ref.dtype) problems.push(`${name}: dtype ${out.type} != ${ref.dtype}`);
    const shape = Array.from(out.dims, Number);
    if (JSON.stringify(shape) !== JSON.stringify(ref.shape)) {
      problems.push(`${name}: shape ${JSON.stringify(shape)} != ${JSON.stringify(ref.shape)}`);
      continue;
    }
    if (ref.dtype === 'string') {
      const bad = ref.values.findIndex((v, i) => v !== out.data[i]);
      if (bad >= 0) problems.push(`${name}: string ${bad} differs`);
      continue;
    }
    const refValues = typedValues(ref);
    let beyond = 0;
    for (let i = 0; i < refValues.length; i += 1) {
      const r = asNumber(refValues[i]);
      const x = asNumber(out.data[i]);
      const diff = Math.abs(x - r);
      if (!Number.isFinite(diff)) {
        if (!(Number.isNaN(r) && Number.isNaN(x)) && r !== x) {
          problems.push(`${name}: non-finite values`);
          maxAbs = Infinity;
        }
        continue;
      }
      maxAbs = Math.max(maxAbs, diff);
      maxRel = Math.max(maxRel, diff / Math.max(Math.abs(r), 1e-12));
      if (diff > atol + rtol * Math.abs(r)) beyond += 1;
    }
    if (beyond) problems.push(`${name}: ${beyond} values beyond tolerance`);
  }
  return { max_abs_diff: maxAbs, max_rel_diff: maxRel, passed: problems.length === 0, problems };
}
