// The cityserve canvas page: paint label ids, send them (raw uint8 ids) to POST /render, show the
// photo. Plain JS, no build step. The label map lives in `ids` (one id per model pixel); the <canvas>
// shows it in palette colours with no smoothing, so canvas.toBlob() *is* the label PNG (downloads).
"use strict";

const MAX_UNDO = 40;
const DRAG_INTERVAL_MS = 150; // while dragging: at most one render request per this many ms,
// and only after the server has been left idle for as long as the last request took: the server is
// busy at most half the time of a drag, so the stroke's own render seldom waits for a drag render

const $ = (id) => document.getElementById(id);
const labelCanvas = $("labels");
const ctx = labelCanvas.getContext("2d", { willReadFrequently: true });
const photo = $("photo");

const app = {
  info: null, // GET /labels
  ids: null, // Int32Array [H*W]
  image: null, // ImageData of the canvas
  colorOf: [], // id -> [r, g, b]
  idOfColor: new Map(), // (r<<16|g<<8|b) -> id
  current: 0, // the class the brush paints
  eraserId: 0, // the class the eraser paints
  undo: [],
  redo: [],
  inFlight: null, // AbortController of the render request in flight
  pending: null, // {reason, t0}: the one render waiting for the one in flight
  lastPhases: null, // where the last shown render's time went (see send())
  lastDone: 0, // performance.now() when the last request ended
  lastRequestMs: 0, // how long it took, sent -> answered
  seq: 0, // render requests sent
  shown: 0, // sequence number of the photo on screen
  renders: 0, // photos shown
  lastRenderMs: null, // stroke end (or request) -> photo on screen, ms
  lastServerMs: null,
  photoBlob: null,
  lost: null, // "canvas" | "triton" | null
  pendingUpload: null, // bytes of an upload refused for off-palette colours
};
window.cityserveCanvas = app; // for the browser test and the latency benchmark

function setStatus(text, lost) {
  const s = $("status");
  s.textContent = text;
  s.classList.toggle("lost", Boolean(lost));
}

function showMessage(text, offerSnap) {
  $("message-text").textContent = text;
  $("snap").hidden = !offerSnap;
  $("message").hidden = false;
}

function hideMessage() {
  $("message").hidden = true;
  app.pendingUpload = null;
}

// ---- the model and its palette -----------------------------------------------------------------
async function loadInfo() {
  const r = await fetch("/labels");
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || `GET /labels: HTTP ${r.status}`);
  app.info = body;
  const { width, height } = body;
  labelCanvas.width = width;
  labelCanvas.height = height;
  photo.width = width;
  photo.height = height;
  const scale = Math.max(1, Math.floor(512 / width));
  labelCanvas.style.width = photo.style.width = `${width * scale}px`;
  app.ids = new Int32Array(width * height);
  app.image = ctx.createImageData(width, height);
  const box = $("palette");
  box.textContent = "";
  for (const c of body.classes) {
    app.colorOf[c.id] = c.color;
    app.idOfColor.set((c.color[0] << 16) | (c.color[1] << 8) | c.color[2], c.id);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "swatch";
    b.dataset.id = c.id;
    b.dataset.name = c.name;
    b.title = `${c.name} (id ${c.id}, ${c.hex})`;
    const sw = document.createElement("i");
    sw.style.background = c.hex;
    b.append(sw, document.createTextNode(c.name));
    b.addEventListener("click", () => selectClass(c.id));
    box.append(b);
  }
  const byName = (n) => body.classes.find((c) => c.name === n);
  app.eraserId = (byName("unlabeled") || body.classes[0]).id;
  $("eraser-note").textContent = `(eraser paints "${nameOf(app.eraserId)}")`;
  selectClass((byName("road") || body.classes[0]).id);
  app.ids.fill(app.eraserId);
  $("model-info").textContent =
    `${body.model}: ${height}x${width}, label set ${body.label_set}, ${body.classes.length} classes`;
}

function nameOf(id) {
  const c = app.info.classes.find((k) => k.id === id);
  return c ? c.name : `id ${id}`;
}

function selectClass(id) {
  app.current = id;
  for (const b of document.querySelectorAll(".swatch")) b.classList.toggle("active", Number(b.dataset.id) === id);
  const brush = document.querySelector('input[name=tool][value=eraser]');
  if (brush.checked) document.querySelector('input[name=tool][value=brush]').checked = true;
}

// ---- ids <-> pixels ----------------------------------------------------------------------------
function redraw() {
  const d = app.image.data;
  const ids = app.ids;
  for (let i = 0; i < ids.length; i++) {
    const c = app.colorOf[ids[i]] || [0, 0, 0];
    d[4 * i] = c[0];
    d[4 * i + 1] = c[1];
    d[4 * i + 2] = c[2];
    d[4 * i + 3] = 255;
  }
  ctx.putImageData(app.image, 0, 0);
}

function labelPng() {
  return new Promise((resolve) => labelCanvas.toBlob(resolve, "image/png"));
}

// ---- undo / redo -------------------------------------------------------------------------------
function checkpoint() {
  app.undo.push(app.ids.slice());
  if (app.undo.length > MAX_UNDO) app.undo.shift();
  app.redo = [];
  updateUndoButtons();
}

function restore(from, to) {
  if (!from.length) return;
  to.push(app.ids.slice());
  app.ids = from.pop();
  redraw();
  updateUndoButtons();
  requestRender("edit");
}

function updateUndoButtons() {
  $("undo").disabled = !app.undo.length;
  $("redo").disabled = !app.redo.length;
}

// ---- painting ----------------------------------------------------------------------------------
function tool() {
  return document.querySelector("input[name=tool]:checked").value;
}

function stamp(cx, cy, radius, id) {
  const { width, height } = app.info;
  const r2 = radius * radius;
  const x0 = Math.max(0, Math.floor(cx - radius)), x1 = Math.min(width - 1, Math.ceil(cx + radius));
  const y0 = Math.max(0, Math.floor(cy - radius)), y1 = Math.min(height - 1, Math.ceil(cy + radius));
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const dx = x - cx, dy = y - cy;
      if (dx * dx + dy * dy <= r2) app.ids[y * width + x] = id;
    }
  }
}

function line(a, b, radius, id) {
  const n = Math.max(1, Math.ceil(Math.hypot(b.x - a.x, b.y - a.y)));
  for (let k = 0; k <= n; k++) stamp(a.x + ((b.x - a.x) * k) / n, a.y + ((b.y - a.y) * k) / n, radius, id);
}

function fill(x, y, id) {
  const { width, height } = app.info;
  const ids = app.ids;
  const start = ids[y * width + x];
  if (start === id) return;
  const stack = [y * width + x];
  while (stack.length) {
    const p = stack.pop();
    if (ids[p] !== start) continue;
    ids[p] = id;
    const px = p % width, py = (p - px) / width;
    if (px > 0) stack.push(p - 1);
    if (px < width - 1) stack.push(p + 1);
    if (py > 0) stack.push(p - width);
    if (py < height - 1) stack.push(p + width);
  }
}

function modelPoint(ev) {
  const rect = labelCanvas.getBoundingClientRect();
  return {
    x: ((ev.clientX - rect.left) / rect.width) * app.info.width,
    y: ((ev.clientY - rect.top) / rect.height) * app.info.height,
  };
}

let stroke = null; // {last: point, id, radius, lastSent}

labelCanvas.addEventListener("pointerdown", (ev) => {
  if (!app.info || ev.button !== 0) return;
  labelCanvas.setPointerCapture(ev.pointerId);
  const p = modelPoint(ev);
  const t = tool();
  checkpoint();
  if (t === "fill") {
    fill(Math.min(app.info.width - 1, Math.floor(p.x)), Math.min(app.info.height - 1, Math.floor(p.y)), app.current);
    redraw();
    requestRender("stroke");
    return;
  }
  const id = t === "eraser" ? app.eraserId : app.current;
  const radius = Number($("size").value) / 2;
  stroke = { last: p, id, radius, lastSent: performance.now() };
  stamp(p.x, p.y, radius, id);
  redraw();
});

labelCanvas.addEventListener("pointermove", (ev) => {
  if (!stroke) return;
  const p = modelPoint(ev);
  line(stroke.last, p, stroke.radius, stroke.id);
  stroke.last = p;
  redraw();
  const now = performance.now();
  if (!app.inFlight && now - stroke.lastSent >= DRAG_INTERVAL_MS && now - app.lastDone >= app.lastRequestMs) {
    stroke.lastSent = now;
    requestRender("drag");
  }
});

function endStroke() {
  if (!stroke) return;
  stroke = null;
  requestRender("stroke");
}
labelCanvas.addEventListener("pointerup", endStroke);
labelCanvas.addEventListener("pointercancel", endStroke);

// ---- rendering ---------------------------------------------------------------------------------
// A seeded render is reproducible, so its live preview can be a JPEG (a fraction of a PNG's time to
// encode and decode) and "download photo" asks the server for the same photo as a PNG.
function renderUrl() {
  const q = new URLSearchParams({ model: app.info.model });
  const seed = $("seed").value.trim();
  if (seed !== "") q.set("seed", seed);
  q.set("format", seed !== "" && $("jpeg-preview").checked ? "jpeg" : "png");
  return `/render?${q}`;
}

// The label map as the request body: raw uint8 ids (one byte a pixel, no PNG coding) where every id
// fits a byte, else the canvas's palette-colour PNG.
async function labelBody() {
  if (app.info.num_classes <= 256) {
    const bytes = new Uint8Array(app.ids.length);
    bytes.set(app.ids);
    return { body: bytes, type: "application/octet-stream" };
  }
  return { body: await labelPng(), type: "image/png" };
}

// "read;dur=0.3, check;dur=1.2" -> {read: 0.3, check: 1.2}
function parseServerTiming(header) {
  const out = {};
  for (const part of (header || "").split(",")) {
    const m = /^\s*([\w-]+)\s*;\s*dur=([\d.]+)/.exec(part);
    if (m) out[m[1]] = Number(m[2]);
  }
  return out;
}

function nextFrame() {
  // the frame that paints the new photo; a hidden page has no frames, so never wait long for one
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 100);
    requestAnimationFrame(() => { clearTimeout(timer); resolve(); });
  });
}

// At most one request in flight (the server renders one at a time anyway): a render asked for while
// one is in flight waits for it, and a newer one replaces the waiting one, so at most one superseded
// request is ever queued. Drag renders never wait: a busy server simply skips them.
function requestRender(reason) {
  if (!app.info) return;
  const t0 = performance.now();
  if (app.inFlight) {
    if (reason !== "drag") app.pending = { reason, t0 };
    return;
  }
  send(reason, t0);
}

// One request; ``t0``: when it was asked for. Records the phases of its time in app.lastPhases (ms):
// wait (for the request in flight), encode (the body), request (sent -> the answer's headers),
// download (the body), decode (the photo's <img> loaded), frame (the next frame, which paints it),
// and the server's own Server-Timing entries.
async function send(reason, t0) {
  const controller = new AbortController();
  app.inFlight = controller;
  const seq = ++app.seq;
  const phases = { wait: performance.now() - t0 };
  let t = performance.now();
  const lap = (name) => { const now = performance.now(); phases[name] = now - t; t = now; };
  try {
    const { body, type } = await labelBody();
    lap("encode");
    const url = renderUrl();
    const r = await fetch(url, { method: "POST", body, signal: controller.signal,
                                         headers: { "Content-Type": type } });
    lap("request");
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
      if (r.status === 503) return connectionLost("triton", err.error);
      showMessage(`render refused: ${err.error}`, false);
      return;
    }
    const bytes = new Uint8Array(await r.arrayBuffer());
    const blob = new Blob([bytes], { type: r.headers.get("Content-Type") || "image/png" });
    lap("download");
    if (seq < app.shown || controller.signal.aborted) return;
    phases.server = parseServerTiming(r.headers.get("Server-Timing"));
    app.lastServerMs = Number(r.headers.get("X-Render-Ms"));
    app.photoSource = { url, body, type }; // what the photo on screen was rendered from
    await showPhoto(blob, bytes, seq);
    lap("decode");
    await nextFrame();
    lap("frame");
    const ms = performance.now() - t0;
    phases.total = ms;
    performance.measure(`cityserve render ${seq} (${reason})`, { start: t0, duration: ms });
    app.lastRenderMs = ms;
    app.lastPhases = phases;
    app.lastReason = reason;
    app.renders++;
    if (app.lost) recovered();
    setStatus(`rendered in ${ms.toFixed(0)} ms (server ${app.lastServerMs.toFixed(0)} ms) at ` +
              new Date().toLocaleTimeString());
    document.dispatchEvent(new CustomEvent("photo-shown", { detail: { seq, ms, reason, phases } }));
  } catch (e) {
    if (e.name === "AbortError") return;
    connectionLost("canvas", String(e.message || e));
  } finally {
    if (app.inFlight === controller) {
      app.inFlight = null;
      app.lastDone = performance.now();
      app.lastRequestMs = phases.request || 0;
      const next = app.pending;
      app.pending = null;
      if (next) send(next.reason, next.t0); // sets inFlight at once: never a moment of "idle" between
    }
  }
}

function base64(bytes) {
  if (bytes.toBase64) return bytes.toBase64();
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

// The photo into its <img>, as a data: URL (decoded in the page, no blob-store round trip: a few ms
// less than an object URL here). Resolves on its load event; the next frame paints it. (img.decode()
// would resolve a compositor frame later in Chromium: ~10 ms more to the screen.)
function showPhoto(blob, bytes, seq) {
  return new Promise((resolve) => {
    photo.onload = photo.onerror = () => resolve();
    app.shown = seq;
    app.photoBlob = blob;
    photo.src = `data:${blob.type};base64,${base64(bytes)}`;
  });
}

// ---- a lost connection, shown until the server is back -----------------------------------------
let healthTimer = null;

function connectionLost(what, detail) {
  app.lost = what;
  setStatus(what === "triton"
    ? "Triton server lost: retrying..."
    : "connection to the canvas server lost: retrying...", true);
  showMessage(what === "triton" ? detail : `cannot reach the canvas server (${detail})`, false);
  if (!healthTimer) healthTimer = setInterval(pollHealth, 1000);
}

async function pollHealth() {
  try {
    const r = await fetch("/health", { cache: "no-store" });
    if (r.ok) {
      if (!app.info) await start();
      else requestRender("reconnect");
    }
  } catch (e) { /* still lost */ }
}

function recovered() {
  app.lost = null;
  clearInterval(healthTimer);
  healthTimer = null;
  hideMessage();
}

// ---- uploads and starting layouts ---------------------------------------------------------------
async function loadLabelPng(bytes, nearest, what) {
  const r = await fetch(`/upload?model=${encodeURIComponent(app.info.model)}&nearest=${nearest ? 1 : 0}`,
                        { method: "POST", body: bytes, headers: { "Content-Type": "image/png" } });
  if (!r.ok) {
    const err = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
    if (r.status === 503) return connectionLost("triton", err.error);
    const offPalette = r.status === 400 && /colou?rs? .*not|not in .*palette|unknown colou?r/i.test(err.error);
    app.pendingUpload = offPalette ? bytes : null;
    showMessage(`${what}: ${err.error}`, offPalette);
    return;
  }
  const resized = r.headers.get("X-Resized") === "1";
  const bitmap = await createImageBitmap(await r.blob());
  checkpoint();
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0);
  const d = ctx.getImageData(0, 0, app.info.width, app.info.height).data;
  for (let i = 0; i < app.ids.length; i++) {
    const id = app.idOfColor.get((d[4 * i] << 16) | (d[4 * i + 1] << 8) | d[4 * i + 2]);
    app.ids[i] = id === undefined ? app.eraserId : id;
  }
  redraw();
  hideMessage();
  if (resized) showMessage(`${what}: resized to ${app.info.height}x${app.info.width} (nearest neighbour)`, false);
  requestRender("load");
}

$("upload").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  ev.target.value = "";
  if (!file) return;
  if (file.size > app.info.max_bytes) {
    showMessage(`${file.name}: ${file.size} bytes, over the model's maximum of ${app.info.max_bytes}`, false);
    return;
  }
  await loadLabelPng(new Uint8Array(await file.arrayBuffer()), false, file.name);
});

$("snap").addEventListener("click", () => {
  const bytes = app.pendingUpload;
  if (bytes) loadLabelPng(bytes, true, "upload (snapped to the nearest palette colours)");
});
$("dismiss").addEventListener("click", hideMessage);

$("layouts").addEventListener("change", async (ev) => {
  const name = ev.target.value;
  ev.target.value = "";
  if (!name) return;
  if (name === RANDOM_STREET) {  // the layout model's street for the style seed (same seed, same street)
    const seed = $("seed").value || "0";
    const r = await fetch(`/random?seed=${encodeURIComponent(seed)}`);
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: `HTTP ${r.status}` }));
      return showMessage(`random street: ${err.error}`, false);
    }
    return loadLabelPng(new Uint8Array(await r.arrayBuffer()), false, `random street ${seed}`);
  }
  const r = await fetch(`/examples/${encodeURIComponent(name)}`);
  if (!r.ok) return showMessage(`layout ${name}: HTTP ${r.status}`, false);
  await loadLabelPng(new Uint8Array(await r.arrayBuffer()), false, name);
});

const RANDOM_STREET = "random street (layout model, style seed)";

async function loadLayouts() {
  const o = document.createElement("option");
  o.value = o.textContent = RANDOM_STREET;
  $("layouts").append(o);
  const r = await fetch("/examples");
  if (!r.ok) return;
  for (const name of (await r.json()).examples) {
    const o = document.createElement("option");
    o.value = o.textContent = name;
    $("layouts").append(o);
  }
}

// ---- buttons -----------------------------------------------------------------------------------
function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

$("undo").addEventListener("click", () => restore(app.undo, app.redo));
$("redo").addEventListener("click", () => restore(app.redo, app.undo));
$("clear").addEventListener("click", () => {
  checkpoint();
  app.ids.fill(app.eraserId);
  redraw();
  requestRender("edit");
});
$("seed").addEventListener("change", () => requestRender("seed"));
$("jpeg-preview").addEventListener("change", () => requestRender("seed"));
$("reseed").addEventListener("click", () => {
  $("seed").value = Math.floor(Math.random() * 2 ** 31);
  requestRender("seed");
});
$("download-labels").addEventListener("click", async () => download(await labelPng(), "labels.png"));
$("download-photo").addEventListener("click", async () => {
  if (!app.photoBlob) return;
  if (app.photoBlob.type === "image/png") return download(app.photoBlob, "photo.png");
  const src = app.photoSource; // a JPEG preview: the same (seeded) render, as a PNG
  const r = await fetch(src.url.replace("format=jpeg", "format=png"),
                        { method: "POST", body: src.body, headers: { "Content-Type": src.type } });
  if (!r.ok) return showMessage(`photo download: HTTP ${r.status}`, false);
  download(await r.blob(), "photo.png");
});
document.addEventListener("keydown", (ev) => {
  if (!(ev.ctrlKey || ev.metaKey) || ev.target.tagName === "INPUT") return;
  if (ev.key === "z") { ev.preventDefault(); restore(ev.shiftKey ? app.redo : app.undo, ev.shiftKey ? app.undo : app.redo); }
  if (ev.key === "y") { ev.preventDefault(); restore(app.redo, app.undo); }
});

// ---- start -------------------------------------------------------------------------------------
async function start() {
  try {
    await loadInfo();
  } catch (e) {
    app.info = null;
    connectionLost("triton", `cannot read the model's labels: ${e.message || e}`);
    return;
  }
  redraw();
  loadLayouts();
  requestRender("start");
  document.body.dataset.ready = "1";
}
start();
