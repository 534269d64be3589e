#!/usr/bin/env node
// node js/check_onnx.mjs VERSION_DIR...
//
// Verifies the size and sha256 of model.onnx and golden.json against the checksums
// manifest.json records (a modified file fails the folder, naming the file), then
// loads each export's model.onnx in onnxruntime-node, feeds the golden inputs of
// golden.json (int64 as BigInt64Array, strings as string tensors), compares the
// outputs with the golden (Keras) outputs at the manifest's parity tolerance and
// prints one JSON line per version folder:
//   {"version_dir", "name", "passed", "max_abs_diff", "max_rel_diff",
//    "tolerance", "outputs", "problems", "load_ms", "run_ms", "runtime"}
// Exits 1 when any folder fails (or cannot be read), 2 on bad usage.

import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import process from 'node:process';

import * as ort from 'onnxruntime-node';

import { compareOutputs, toTensor } from './golden.mjs';

/** The bytes of `rel` in `dir`, after checking them against manifest.json. */
export async function verifiedFile(dir, manifest, rel) {
  const want = manifest.checksums?.[rel];
  const file = path.join(dir, rel);
  if (!want) {
    throw new Error(`${file} is not listed in manifest.json's checksums, so it cannot be verified; re-export`);
  }
  const data = await readFile(file);
  const sha256 = createHash('sha256').update(data).digest('hex');
  if (data.length !== want.size || sha256 !== want.sha256) {
    throw new Error(
      `${file} was modified or is corrupt: its sha256 ${sha256.slice(0, 12)}... `
      + `(${data.length} bytes) differs from manifest.json's ${String(want.sha256).slice(0, 12)}... `
      + `(${want.size} bytes); re-export the model`,
    );
  }
  return data;
}

async function checkOne(dir) {
  const result = { version_dir: dir, runtime: `onnxruntime-node ${ort.env.versions?.node ?? ''}`.trim() };
  try {
    const manifest = JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8'));
    result.name = manifest.name;
    const goldenFile = manifest.golden?.json;
    if (!goldenFile) throw new Error(`${dir}/manifest.json lists no golden file; re-export`);
    const golden = JSON.parse((await verifiedFile(dir, manifest, goldenFile)).toString('utf8'));
    const { atol, rtol } = manifest.parity.tolerance;
    result.tolerance = { atol, rtol };
    const model = await verifiedFile(dir, manifest, manifest.onnx.file);
    let t = performance.now();
    const session = await ort.InferenceSession.create(
      new Uint8Array(model.buffer, model.byteOffset, model.byteLength),
      { executionProviders: ['cpu'] },
    );
    result.load_ms = +(performance.now() - t).toFixed(2);
    const feeds = Object.fromEntries(golden.inputs.map((e) => [e.name, toTensor(ort, e)]));
    t = performance.now();
    const outputs = await session.run(feeds);
    result.run_ms = +(performance.now() - t).toFixed(2);
    result.outputs = Object.keys(outputs).sort();
    Object.assign(result, compareOutputs(golden, outputs, { atol, rtol }));
    await session.release();
  } catch (err) {
    Object.assign(result, { passed: false, problems: [`${err.name}: ${err.message}`] });
  }
  return result;
}

async function main(argv) {
  if (argv.length === 0) {
    process.stderr.write('usage: node js/check_onnx.mjs VERSION_DIR...\n');
    return 2;
  }
  let failed = 0;
  for (const dir of argv) {
    const result = await checkOne(dir);
    if (!result.passed) failed += 1;
    process.stdout.write(`${JSON.stringify(result)}\n`);
  }
  return failed ? 1 : 0;
}

process.exitCode = await main(process.argv.slice(2));
