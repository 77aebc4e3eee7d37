#!/usr/bin/env node
// Read the markings on a photo with the marktrace ONNX models from Node.js.
//
// Only onnxruntime-node, pngjs and jpeg-js: no OpenCV, no marktrace code. Every step follows
// models/CONTRACT.md (section numbers in the comments); the image operations that OpenCV would do
// (area/bilinear resize, connected components, minimum-area rectangle, perspective warp) are
// written out below, small and readable.
//
//   npm install --no-audit --no-fund      (once, in examples/js)
//   node read.mjs PHOTO.png [PHOTO.jpg ...] [--models ../../models/shipped] [--variant int8|fp32] [--json]
//
// Note: JPEG EXIF orientation (CONTRACT.md section 1) is not applied here; rotate such photos first.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import ort from "onnxruntime-node";
import { PNG } from "pngjs";
import jpeg from "jpeg-js";

const CROP_PAD_X = 0.2; // section 5.1
const CROP_PAD_Y = 0.1;
const MAX_CROP_WIDTH = 1024;
const MAX_BATCH = 16; // section 5.6
const MAX_WIDTH_RATIO = 1.35;
const FLIP_MARGIN = 0.15; // section 7

// Python's round(): half to even.
function pyRound(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// ---- section 1: decode to RGB ------------------------------------------------------------------
function loadRgb(file) {
  const data = fs.readFileSync(file);
  const isPng = data.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
  const img = isPng ? PNG.sync.read(data) : jpeg.decode(data, { useTArray: true, formatAsRGBA: true });
  const { width, height } = img;
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    rgb[3 * i] = img.data[4 * i]; // alpha (index 4i+3) is dropped, not composited
    rgb[3 * i + 1] = img.data[4 * i + 1];
    rgb[3 * i + 2] = img.data[4 * i + 2];
  }
  return { rgb, width, height };
}

// ---- section 2: resize ---------------------------------------------------------------------------
// Area weights along one axis: output cell d covers input [d/s, (d+1)/s).
function areaWeights(srcLen, dstLen) {
  const inv = srcLen / dstLen;
  const out = [];
  for (let d = 0; d < dstLen; d++) {
    const a = d * inv, b = Math.min((d + 1) * inv, srcLen);
    const taps = [];
    for (let j = Math.floor(a); j < Math.ceil(b); j++) {
      const w = Math.min(b, j + 1) - Math.max(a, j);
      if (w > 1e-9) taps.push([j, w / (b - a)]);
    }
    out.push(taps);
  }
  return out;
}

// Bilinear weights along one axis, half-pixel centres, clamped at the edges.
function linearWeights(srcLen, dstLen, scale) {
  const out = [];
  for (let d = 0; d < dstLen; d++) {
    let x = (d + 0.5) / scale - 0.5;
    let j = Math.floor(x);
    let f = x - j;
    if (j < 0) { j = 0; f = 0; }
    if (j >= srcLen - 1) { j = srcLen - 1; f = 0; }
    out.push(f === 0 ? [[j, 1]] : [[j, 1 - f], [j + 1, f]]);
  }
  return out;
}

function resizeRgb(img, newW, newH, scale) {
  const wx = scale < 1 ? areaWeights(img.width, newW) : linearWeights(img.width, newW, scale);
  const wy = scale < 1 ? areaWeights(img.height, newH) : linearWeights(img.height, newH, scale);
  const tmp = new Float32Array(img.height * newW * 3); // horizontal pass
  for (let y = 0; y < img.height; y++)
    for (let x = 0; x < newW; x++)
      for (const [j, w] of wx[x])
        for (let c = 0; c < 3; c++) tmp[(y * newW + x) * 3 + c] += w * img.rgb[(y * img.width + j) * 3 + c];
  const out = new Uint8Array(newH * newW * 3); // vertical pass
  for (let y = 0; y < newH; y++)
    for (let x = 0; x < newW; x++)
      for (let c = 0; c < 3; c++) {
        let v = 0;
        for (const [i, w] of wy[y]) v += w * tmp[(i * newW + x) * 3 + c];
        out[(y * newW + x) * 3 + c] = Math.min(255, Math.max(0, Math.round(v)));
      }
  return out;
}

function detectorInput(img, longSide) {
  const s = Math.min(longSide / Math.max(img.width, img.height), 2.0);
  const newW = Math.max(pyRound(img.width * s), 1), newH = Math.max(pyRound(img.height * s), 1);
  const resized = resizeRgb(img, newW, newH, s);
  const W = Math.ceil(newW / 32) * 32, H = Math.ceil(newH / 32) * 32;
  const data = new Uint8Array(H * W * 3); // zero padding right and bottom
  for (let y = 0; y < newH; y++) data.set(resized.subarray(y * newW * 3, (y + 1) * newW * 3), y * W * 3);
  return { tensor: new ort.Tensor("uint8", data, [1, H, W, 3]), scale: 1 / s };
}

// ---- section 4: geometry helpers -----------------------------------------------------------------
const sub = (a, b) => [a[0] - b[0], a[1] - b[1]];
const add = (a, b) => [a[0] + b[0], a[1] + b[1]];
const mul = (a, k) => [a[0] * k, a[1] * k];
const dot = (a, b) => a[0] * b[0] + a[1] * b[1];
const norm = (a) => Math.hypot(a[0], a[1]);
const unit = (a) => mul(a, 1 / Math.max(norm(a), 1e-6));

function padQuad(q, px, py) {
  const height = (norm(sub(q[3], q[0])) + norm(sub(q[2], q[1]))) / 2;
  const dx = mul(unit(add(sub(q[1], q[0]), sub(q[2], q[3]))), px * height);
  const dy = mul(unit(add(sub(q[3], q[0]), sub(q[2], q[1]))), py * height);
  return [sub(sub(q[0], dx), dy), sub(add(q[1], dx), dy), add(add(q[2], dx), dy), add(sub(q[3], dx), dy)];
}

// Connected components of a binary map, 8-connectivity: arrays of cell indices.
function components(binary, w, h) {
  const label = new Int32Array(w * h).fill(-1);
  const comps = [];
  for (let start = 0; start < w * h; start++) {
    if (!binary[start] || label[start] >= 0) continue;
    const cells = [start];
    label[start] = comps.length;
    for (let k = 0; k < cells.length; k++) {
      const x = cells[k] % w, y = (cells[k] / w) | 0;
      for (let dy = -1; dy <= 1; dy++)
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx, ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
          const n = ny * w + nx;
          if (binary[n] && label[n] < 0) { label[n] = comps.length; cells.push(n); }
        }
    }
    comps.push(cells);
  }
  return comps;
}

// Convex hull (Andrew's monotone chain), counter-clockwise, no collinear points.
function convexHull(points) {
  const p = [...points].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  if (p.length < 3) return p;
  const cross = (o, a, b) => (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]);
  const lower = [], upper = [];
  for (const q of p) {
    while (lower.length >= 2 && cross(lower.at(-2), lower.at(-1), q) <= 0) lower.pop();
    lower.push(q);
  }
  for (const q of p.reverse()) {
    while (upper.length >= 2 && cross(upper.at(-2), upper.at(-1), q) <= 0) upper.pop();
    upper.push(q);
  }
  return lower.slice(0, -1).concat(upper.slice(0, -1));
}

// Minimum-area rectangle around points (one side on a hull edge), grown by `grow` in width and height.
function minAreaRectCorners(points, grow) {
  const hull = convexHull(points);
  let best = null;
  const edges = hull.length > 1 ? hull.length : 1;
  for (let i = 0; i < edges; i++) {
    const e = hull.length > 1 ? sub(hull[(i + 1) % hull.length], hull[i]) : [1, 0];
    const u = norm(e) > 0 ? unit(e) : [1, 0];
    const v = [-u[1], u[0]];
    let a0 = Infinity, a1 = -Infinity, b0 = Infinity, b1 = -Infinity;
    for (const q of hull) {
      const a = dot(q, u), b = dot(q, v);
      a0 = Math.min(a0, a); a1 = Math.max(a1, a); b0 = Math.min(b0, b); b1 = Math.max(b1, b);
    }
    const area = (a1 - a0) * (b1 - b0);
    if (!best || area < best.area - 1e-9) best = { area, u, v, a0: a0 - grow / 2, a1: a1 + grow / 2, b0: b0 - grow / 2, b1: b1 + grow / 2 };
  }
  const { u, v, a0, a1, b0, b1 } = best;
  const at = (a, b) => add(mul(u, a), mul(v, b));
  return [at(a0, b0), at(a1, b0), at(a1, b1), at(a0, b1)]; // corners in order around the rectangle
}

function median(values) {
  const v = Float64Array.from(values).sort();
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

// Section 4.3.7: the core-to-line calibration, or the inverse of the training shrink without one.
function lineGeometry(meta) {
  if (meta.line_geometry) return JSON.parse(meta.line_geometry);
  const shrink = Number(meta.core_shrink);
  return { height_per_core: 1 / (1 - 2 * shrink), height_offset: 0, length_per_core: 1,
    length_per_height: 2 * shrink, length_offset: 0 };
}

// Sections 4.3.5-4.3.7: axis, median core shape (thickness, centre line, length), grown to the line.
function lineRectangle(points, geo) {
  const box = minAreaRectCorners(points, 1.0);
  const edges = [sub(box[1], box[0]), sub(box[2], box[1])];
  let a = unit(norm(edges[1]) > norm(edges[0]) ? edges[1] : edges[0]);
  if (a[0] < -1e-6 || (Math.abs(a[0]) <= 1e-6 && a[1] < 0)) a = mul(a, -1);
  const n = [-a[1], a[0]];
  const u = points.map((p) => dot(p, a)), w = points.map((p) => dot(p, n));
  const uMin = Math.min(...u);
  const counts = [], sums = [];
  u.forEach((x, i) => {
    const k = Math.floor(x - uMin + 0.5);
    counts[k] = (counts[k] || 0) + 1;
    sums[k] = (sums[k] || 0) + w[i];
  });
  const present = [];
  for (let k = 0; k < counts.length; k++) if (counts[k]) present.push(k);
  const t = median(present.map((k) => counts[k]));
  const m = counts.length;
  const c = add(mul(a, uMin + (m - 1) / 2), mul(n, median(present.map((k) => sums[k] / counts[k]))));
  const height = Math.max(geo.height_per_core * t + geo.height_offset, 1);
  const length = Math.max(geo.length_per_core * m + geo.length_per_height * height + geo.length_offset, height);
  const ha = mul(a, length / 2), hn = mul(n, height / 2);
  return [sub(sub(c, ha), hn), sub(add(c, ha), hn), add(add(c, ha), hn), add(sub(c, ha), hn)];
}

function readingDirection(c, pred) {
  const edges = [sub(c[1], c[0]), sub(c[2], c[1])];
  const lengths = edges.map(norm);
  const k = lengths[1] > lengths[0] ? 1 : 0;
  if (lengths[k] < 1.5 * Math.max(lengths[1 - k], 1e-6)) {
    const n = norm(pred);
    return n < 1e-6 ? [[1, 0], 0] : [mul(pred, 1 / n), n];
  }
  let axis = mul(edges[k], 1 / Math.max(lengths[k], 1e-6));
  const g = dot(axis, pred);
  if (g < 0 || (g === 0 && axis[0] < 0)) axis = mul(axis, -1);
  return [axis, Math.abs(g)];
}

function orderQuad(corners, d) {
  const up = [d[1], -d[0]];
  const idx = [0, 1, 2, 3].sort((i, j) => dot(corners[j], up) - dot(corners[i], up));
  const byAlong = (i, j) => dot(corners[i], d) - dot(corners[j], d);
  const [tl, tr] = idx.slice(0, 2).sort(byAlong);
  const [bl, br] = idx.slice(2).sort(byAlong);
  return [corners[tl], corners[tr], corners[br], corners[bl]];
}

async function detect(session, meta, img) {
  const { tensor, scale } = detectorInput(img, Number(meta.long_side));
  const out = await session.run({ [session.inputNames[0]]: tensor });
  const maps = out[session.outputNames[0]];
  const [, , h, w] = maps.dims;
  const P = maps.data.subarray(0, h * w), C = maps.data.subarray(h * w, 2 * h * w), S = maps.data.subarray(2 * h * w);
  const threshold = Number(meta.threshold), minScore = Number(meta.min_score), stride = Number(meta.stride);
  const geo = lineGeometry(meta);
  const binary = new Uint8Array(h * w).map((_, i) => (P[i] > threshold ? 1 : 0));
  const lines = [];
  for (const cells of components(binary, w, h)) {
    if (cells.length < 4) continue;
    let score = 0, vx = 0, vy = 0;
    for (const i of cells) { score += P[i]; vx += C[i]; vy += S[i]; }
    score /= cells.length;
    if (score < minScore) continue;
    const pred = [vx / cells.length, vy / cells.length];
    const corners = lineRectangle(cells.map((i) => [(i % w) + 0.5, ((i / w) | 0) + 0.5]), geo);
    const [d, conf] = readingDirection(corners, pred);
    const quad = orderQuad(corners.map((p) => mul(p, stride)), d);
    lines.push({ quad: quad.map((p) => mul(p, scale)), score, conf });
  }
  return lines;
}

// ---- section 5: crops ----------------------------------------------------------------------------
function toGray(img) {
  const g = new Uint8Array(img.width * img.height);
  for (let i = 0; i < g.length; i++)
    g[i] = Math.round(0.299 * img.rgb[3 * i] + 0.587 * img.rgb[3 * i + 1] + 0.114 * img.rgb[3 * i + 2]);
  return { data: g, width: img.width, height: img.height };
}

// Homography mapping src[k] -> dst[k] (4 pairs), as 3x3 row-major, solved by Gaussian elimination.
function homography(src, dst) {
  const A = [], b = [];
  for (let k = 0; k < 4; k++) {
    const [x, y] = src[k], [u, v] = dst[k];
    A.push([x, y, 1, 0, 0, 0, -u * x, -u * y]); b.push(u);
    A.push([0, 0, 0, x, y, 1, -v * x, -v * y]); b.push(v);
  }
  for (let c = 0; c < 8; c++) {
    let p = c;
    for (let r = c + 1; r < 8; r++) if (Math.abs(A[r][c]) > Math.abs(A[p][c])) p = r;
    [A[c], A[p]] = [A[p], A[c]]; [b[c], b[p]] = [b[p], b[c]];
    for (let r = 0; r < 8; r++) {
      if (r === c) continue;
      const k = A[r][c] / A[c][c];
      for (let j = c; j < 8; j++) A[r][j] -= k * A[c][j];
      b[r] -= k * b[c];
    }
  }
  return [...b.map((val, i) => val / A[i][i]), 1];
}

function cutCrop(gray, quad, height) {
  const q = padQuad(quad, CROP_PAD_X, CROP_PAD_Y);
  const width = (norm(sub(q[1], q[0])) + norm(sub(q[2], q[3]))) / 2;
  const lineH = (norm(sub(q[3], q[0])) + norm(sub(q[2], q[1]))) / 2;
  const outW = Math.min(Math.max(pyRound((width * height) / Math.max(lineH, 1)), height >> 1), MAX_CROP_WIDTH);
  // Map crop pixels back into the photo: the homography from the target rectangle to the quad.
  const M = homography([[0, 0], [outW, 0], [outW, height], [0, height]], q);
  const crop = new Uint8Array(outW * height);
  const at = (x, y) => gray.data[Math.min(Math.max(y, 0), gray.height - 1) * gray.width + Math.min(Math.max(x, 0), gray.width - 1)];
  for (let y = 0; y < height; y++)
    for (let x = 0; x < outW; x++) {
      const z = M[6] * x + M[7] * y + M[8];
      const sx = (M[0] * x + M[1] * y + M[2]) / z, sy = (M[3] * x + M[4] * y + M[5]) / z;
      const x0 = Math.floor(sx), y0 = Math.floor(sy), fx = sx - x0, fy = sy - y0;
      const v = (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x0 + 1, y0)) + fy * ((1 - fx) * at(x0, y0 + 1) + fx * at(x0 + 1, y0 + 1));
      crop[y * outW + x] = Math.min(255, Math.max(0, Math.round(v)));
    }
  return { data: crop, width: outW, height };
}

const rotate180 = (c) => ({ ...c, data: Uint8Array.from(c.data).reverse() });

// ---- section 6: recognition and greedy CTC -------------------------------------------------------
function ctcGreedy(probs, T, C, offset, charset) {
  let text = "", logSum = 0, n = 0, previous = 0, t = 0;
  const argmax = (s) => {
    let best = 0;
    for (let c = 1; c < C; c++) if (probs[offset + s * C + c] > probs[offset + s * C + best]) best = c;
    return best;
  };
  const best = Array.from({ length: T }, (_, s) => argmax(s));
  while (t < T) {
    const cls = best[t];
    if (cls === 0 || cls === previous) { previous = cls; t++; continue; }
    let end = t, top = 0;
    while (end + 1 < T && best[end + 1] === cls) end++;
    for (let s = t; s <= end; s++) top = Math.max(top, probs[offset + s * C + cls]);
    text += charset[cls - 1];
    logSum += Math.log(Math.min(Math.max(top, 1e-6), 1));
    n++;
    previous = cls;
    t = end + 1;
  }
  return { text, conf: n ? Math.exp(logSum / n) : 1.0 };
}

async function recognize(session, charset, height, crops) {
  const order = crops.map((_, i) => i).sort((i, j) => crops[i].width - crops[j].width);
  const results = new Array(crops.length);
  for (let start = 0; start < order.length; ) {
    let end = start + 1;
    while (end < order.length && end - start < MAX_BATCH && crops[order[end]].width <= crops[order[start]].width * MAX_WIDTH_RATIO) end++;
    const group = order.slice(start, end);
    const W = Math.ceil(Math.max(...group.map((i) => crops[i].width)) / 8) * 8;
    const data = new Uint8Array(group.length * height * W);
    group.forEach((i, b) => {
      const c = crops[i];
      for (let y = 0; y < height; y++)
        for (let x = 0; x < W; x++) data[(b * height + y) * W + x] = c.data[y * c.width + Math.min(x, c.width - 1)];
    });
    const out = await session.run({ [session.inputNames[0]]: new ort.Tensor("uint8", data, [group.length, 1, height, W]) });
    const probs = out[session.outputNames[0]];
    const [, T, C] = probs.dims;
    group.forEach((i, b) => { results[i] = ctcGreedy(probs.data, T, C, b * T * C, charset); });
    start = end;
  }
  return results;
}

// ---- sections 1-7 end to end --------------------------------------------------------------------
async function openModel(file) {
  const session = await ort.InferenceSession.create(file, { intraOpNumThreads: 2, executionProviders: ["cpu"] });
  // onnxruntime-node does not expose metadata_props; read them from the protobuf (field 14 of ModelProto).
  return { session, meta: readMetadata(fs.readFileSync(file)) };
}

// Minimal protobuf walk: ModelProto.metadata_props (field 14) = StringStringEntryProto {key=1, value=2}.
function readMetadata(buf) {
  const meta = {};
  const varint = (state) => {
    let result = 0, shift = 0, byte;
    do { byte = buf[state.pos++]; result += (byte & 0x7f) * 2 ** shift; shift += 7; } while (byte & 0x80);
    return result;
  };
  const state = { pos: 0 };
  while (state.pos < buf.length) {
    const tag = varint(state), field = Math.floor(tag / 8), wire = tag & 7;
    if (wire === 0) { varint(state); continue; }
    if (wire === 1) { state.pos += 8; continue; }
    if (wire === 5) { state.pos += 4; continue; }
    if (wire !== 2) throw new Error(`unexpected protobuf wire type ${wire}`);
    const len = varint(state), end = state.pos + len;
    if (field === 14) {
      const entry = {}, inner = { pos: state.pos };
      const saved = state.pos;
      while (inner.pos < end) {
        state.pos = inner.pos;
        const t = varint(state), l = varint(state);
        entry[Math.floor(t / 8)] = buf.toString("utf8", state.pos, state.pos + l);
        inner.pos = state.pos + l;
      }
      state.pos = saved;
      meta[entry[1]] = entry[2];
    }
    state.pos = end;
  }
  return meta;
}

export async function readPhoto(file, modelsDir, variant = "int8") {
  const registry = JSON.parse(fs.readFileSync(path.join(modelsDir, "registry.json"), "utf8")).models;
  const pick = (task) => registry.find((m) => m.task === task && (m.variant ?? "fp32") === variant && m.default).file;
  const det = await openModel(path.join(modelsDir, pick("line_detection")));
  const rec = await openModel(path.join(modelsDir, pick("line_recognition")));
  const charset = [...JSON.parse(rec.meta.charset)];
  const height = Number(rec.meta.input_height);
  const img = loadRgb(file);
  const gray = toGray(img);
  const detections = await detect(det.session, det.meta, img);
  const crops = detections.map((d) => cutCrop(gray, d.quad, height));
  const score = (r) => r.conf * Math.min(1, [...r.text].length / 3);
  // Section 7: every line read upright and upside down; the photo's other lines vote on the direction.
  const upright = crops.length ? await recognize(rec.session, charset, height, crops) : [];
  const turned = crops.length ? await recognize(rec.session, charset, height, crops.map(rotate180)) : [];
  const gains = upright.map((u, i) => score(turned[i]) - score(u));
  const total = gains.reduce((a, g) => a + g, 0);
  const best = new Map();
  gains.forEach((g, i) => {
    const vote = gains.length > 1 ? (total - g) / (gains.length - 1) : 0;
    const flip = g + vote > FLIP_MARGIN * detections[i].conf;
    best.set(i, flip ? { flipped: true, r: turned[i] } : { flipped: false, r: upright[i] });
  });
  const lines = [];
  for (const [i, { flipped, r }] of best) {
    if (!r.text.trim()) continue;
    const q = detections[i].quad;
    const quad = flipped ? [q[2], q[3], q[0], q[1]] : q;
    lines.push({
      text: r.text,
      confidence: Math.round(r.conf * Math.min(1, detections[i].score / 0.8) * 1e4) / 1e4,
      box: quad.map(([x, y]) => [Math.round(x * 10) / 10, Math.round(y * 10) / 10]),
    });
  }
  const key = (l) => [pyRound(Math.min(...l.box.map((p) => p[1])) / 20), Math.min(...l.box.map((p) => p[0]))];
  lines.sort((a, b) => key(a)[0] - key(b)[0] || key(a)[1] - key(b)[1]);
  // boxes grown past the photo's edge are clipped to it (after the reading order is set)
  for (const l of lines) l.box = l.box.map(([x, y]) => [Math.min(Math.max(x, 0), img.width), Math.min(Math.max(y, 0), img.height)]);
  return { file, lines };
}

async function main() {
  const args = process.argv.slice(2);
  const here = path.dirname(fileURLToPath(import.meta.url));
  let modelsDir = path.resolve(here, "..", "..", "models", "shipped");
  let asJson = false;
  let variant = "int8"; // as marktrace on a CPU; "fp32" for the parent models
  const photos = [];
  for (let k = 0; k < args.length; k++) {
    if (args[k] === "--models") modelsDir = args[++k];
    else if (args[k] === "--json") asJson = true;
    else if (args[k] === "--variant") variant = args[++k];
    else photos.push(args[k]);
  }
  if (!photos.length) {
    console.error("usage: node read.mjs PHOTO [PHOTO ...] [--models DIR] [--variant int8|fp32] [--json]");
    process.exit(2);
  }
  if (!["int8", "fp32"].includes(variant)) {
    console.error(`--variant must be int8 or fp32, not ${variant}`);
    process.exit(2);
  }
  for (const photo of photos) {
    const result = await readPhoto(photo, modelsDir, variant);
    if (asJson) console.log(JSON.stringify(result));
    else {
      console.log(photo);
      for (const l of result.lines) console.log(`  ${JSON.stringify(l.text).padEnd(40)} ${l.confidence.toFixed(3)}  ${JSON.stringify(l.box)}`);
    }
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((err) => { console.error(err.message ?? err); process.exit(1); });
}
