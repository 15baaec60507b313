// The Cadenza panel: one WebSocket in, requests out. Plain JS, no build step, no CDN.
"use strict";

const token = new URLSearchParams(location.search).get("token") || "";
const KEYS = ["a", "s", "d", "f", "j", "k", "l", ";"];
const TRACE_FRAMES = 150; // pitch trace length: 5 s at 30 frames a second
const $ = (id) => document.getElementById(id);
let socket = null;
let patch = null;
let dragging = null; // the slider the performer holds: frames do not move it
let flashAt = 0;
const trace = [];

function send(message) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
}

function say(text, isError) {
  const lines = ($("messages").textContent ? $("messages").textContent.split("\n") : []);
  lines.push((isError ? "error: " : "") + text);
  $("messages").textContent = lines.slice(-5).join("\n");
}

function connect() {
  socket = new WebSocket(`ws://${location.host}/ws?token=${encodeURIComponent(token)}`);
  socket.onopen = () => { $("connection").textContent = "connected"; $("connection").className = "ok"; };
  socket.onclose = () => {
    $("connection").textContent = "disconnected: retrying"; $("connection").className = "bad";
    setTimeout(connect, 1000);
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "patch") showPatch(message);
    else if (message.type === "frame") showFrame(message);
    else if (message.type === "error") say(message.message, true);
    else if (message.type === "notice") say(message.message, false);
  };
}

// -- the patch: built once per patch -----------------------------------------------------

function showPatch(p) {
  patch = p;
  $("patch-name").textContent = p.name;
  $("patch-description").textContent = p.description;
  const list = $("patch-list");
  list.innerHTML = "";
  p.patches.forEach((name, index) => {
    const option = new Option(`${index}: ${name}`, name, false, name === p.name);
    list.add(option);
  });
  $("genie").hidden = !p.buttons;
  $("listen").hidden = Object.keys(p.listeners).length === 0;
  $("beat-box").hidden = !p.listeners.beat;
  $("pitch-box").hidden = !p.listeners.pitch;
  $("chords-box").hidden = !p.listeners.chords;
  buildButtons();
  buildParams(p.nodes);
}

function buildButtons() {
  const box = $("buttons");
  if (box.children.length) return;
  for (let i = 0; i < 8; i++) {
    const button = document.createElement("button");
    button.className = "genie-button";
    button.dataset.button = i;
    button.textContent = `${i + 1}`;
    button.title = `button ${i} (key ${KEYS[i].toUpperCase()} or ${i + 1})`;
    button.addEventListener("pointerdown", (event) => {
      event.preventDefault();
      button.setPointerCapture(event.pointerId);
      const rect = button.getBoundingClientRect();
      const depth = Math.min(Math.max((event.clientY - rect.top) / rect.height, 0), 1);
      press(i, Math.round(20 + 107 * depth));
    });
    const release = () => { if (button.classList.contains("down")) press(i, 0); };
    button.addEventListener("pointerup", release);
    button.addEventListener("pointercancel", release);
    box.appendChild(button);
  }
}

function press(i, velocity) {
  document.querySelector(`.genie-button[data-button="${i}"]`).classList.toggle("down", velocity > 0);
  send({ type: "button", button: i, velocity: velocity });
}

function keyButton(event) {
  if (event.target.tagName === "INPUT" || event.target.tagName === "SELECT") return -1;
  const digit = "12345678".indexOf(event.key);
  return digit >= 0 && event.key.length === 1 ? digit : KEYS.indexOf(event.key.toLowerCase());
}
document.addEventListener("keydown", (event) => {
  const i = keyButton(event);
  if (i >= 0 && !event.repeat && patch && patch.buttons) press(i, 100);
});
document.addEventListener("keyup", (event) => {
  const i = keyButton(event);
  if (i >= 0 && patch && patch.buttons) press(i, 0);
});

function buildParams(nodes) {
  const box = $("nodes");
  box.innerHTML = "";
  for (const node of nodes) {
    const div = document.createElement("div");
    div.className = "node";
    div.innerHTML = `<h3>${node.id} <small>${node.type}</small></h3>`;
    for (const p of node.params) div.appendChild(paramRow(node.id, p));
    box.appendChild(div);
  }
}

function paramRow(nodeId, p) {
  const dotted = `${nodeId}.${p.name}`;
  const row = document.createElement("div");
  row.className = "param";
  row.title = p.doc || dotted;
  const label = document.createElement("label");
  label.textContent = p.name + (p.unit ? ` (${p.unit})` : "");
  const slider = document.createElement("input");
  Object.assign(slider, { type: "range", min: p.lo, max: p.hi, step: (p.hi - p.lo) / 1000, value: p.default });
  slider.id = `param-${nodeId}-${p.name}`;
  slider.dataset.param = dotted;
  const value = document.createElement("span");
  value.className = "range";
  value.id = `value-${nodeId}-${p.name}`;
  value.textContent = `${fmt(p.default)} [${fmt(p.lo)}..${fmt(p.hi)}]`;
  slider.addEventListener("pointerdown", () => { dragging = slider; });
  slider.addEventListener("pointerup", () => { dragging = null; });
  slider.addEventListener("input", () => send({ type: "param", param: dotted, value: Number(slider.value) }));
  const learn = document.createElement("button");
  learn.className = "learn";
  learn.id = `learn-${nodeId}-${p.name}`;
  learn.textContent = "learn";
  learn.dataset.param = dotted;
  learn.addEventListener("click", () => send(learn.classList.contains("armed")
    ? { type: "learn_cancel" } : { type: "learn", param: dotted }));
  row.append(label, slider, value, learn);
  return row;
}

function fmt(x) {
  const a = Math.abs(x);
  return a >= 1000 ? x.toFixed(0) : a >= 10 ? x.toFixed(1) : x.toFixed(3);
}

// -- frames: up to 30 a second ---------------------------------------------------------

function showFrame(f) {
  const peak = Math.max(f.peak_db, -60);
  $("peak").textContent = f.peak_db <= -120 ? "-∞ dBFS" : `${f.peak_db.toFixed(1)} dBFS`;
  $("peak-bar").style.width = `${(peak + 60) / 60 * 100}%`;
  $("load").textContent = `${(f.load * 100).toFixed(1)} % (max ${(f.load_max * 100).toFixed(0)} %)`;
  $("load-bar").style.width = `${Math.min(f.load, 1) * 100}%`;
  $("xruns").textContent = f.xruns;
  $("late").textContent = f.late;
  $("errors").textContent = f.errors;
  $("bar").textContent = f.bar;
  $("beat").textContent = Math.floor(f.beat);
  $("bpm").textContent = f.bpm.toFixed(1);
  showBeatDots(f);
  showLink(f.link);
  showParams(f.params, f.learn);
  if (f.listener_beat) showBeat(f.listener_beat);
  if (f.pitch) showPitch(f.pitch);
  if (f.chords) { $("chord").textContent = f.chords.chord; $("key").textContent = f.chords.key; }
  $("status").textContent = f.status || "";
}

function showLink(link) {
  $("link").hidden = !link;
  if (!link) return;
  $("link-peers").textContent = link.peers;
  $("link-bpm").textContent = link.bpm.toFixed(2);
  $("link-playing").textContent = link.playing ? "playing" : "stopped";
}

function showBeatDots(f) {
  const dots = $("beat-dots");
  if (dots.children.length !== f.beats_per_bar) {
    dots.innerHTML = "";
    for (let i = 0; i < f.beats_per_bar; i++) dots.appendChild(Object.assign(document.createElement("span"), { className: "dot" }));
  }
  [...dots.children].forEach((dot, i) => dot.classList.toggle("on", i === Math.floor(f.beat) - 1));
}

function showParams(params, learn) {
  for (const [nodeId, values] of Object.entries(params)) {
    const node = patch && patch.nodes.find((n) => n.id === nodeId);
    if (!node) continue;
    node.params.forEach((p, i) => {
      const slider = $(`param-${nodeId}-${p.name}`);
      if (!slider) return;
      if (slider !== dragging && document.activeElement !== slider) slider.value = values[i];
      $(`value-${nodeId}-${p.name}`).textContent = `${fmt(values[i])} [${fmt(p.lo)}..${fmt(p.hi)}]`;
    });
  }
  const mapped = Object.fromEntries(Object.entries(learn.mapped).map(([cc, dotted]) => [dotted, cc]));
  $("learn-save").textContent = `save learned CCs (${learn.unsaved})`;
  document.querySelectorAll("button.learn").forEach((button) => {
    const dotted = button.dataset.param;
    button.classList.toggle("armed", learn.armed === dotted);
    button.classList.toggle("mapped", dotted in mapped);
    button.textContent = learn.armed === dotted ? "move a CC…" : dotted in mapped ? `CC ${mapped[dotted]}` : "learn";
  });
}

function showBeat(b) {
  $("listener-bpm").textContent = b.bpm > 0 ? b.bpm.toFixed(1) : "–";
  $("listener-confidence").textContent = b.confidence.toFixed(2);
  $("beats-heard").textContent = b.beats_heard;
  const now = performance.now();
  // flash at the predicted beat: scheduled from the listener's own prediction, not on arrival
  if (b.confidence > 0 && b.next_beat_s < 1.5 / 30 && now - flashAt > 150) {
    flashAt = now + b.next_beat_s * 1000;
    setTimeout(() => {
      $("beat-flash").classList.add("on");
      setTimeout(() => $("beat-flash").classList.remove("on"), 90);
    }, b.next_beat_s * 1000);
  }
}

function showPitch(p) {
  $("pitch-now").textContent = p.voiced ? `${p.f0_hz.toFixed(1)} Hz` : "unvoiced";
  trace.push(p.voiced ? p.f0_hz : 0);
  if (trace.length > TRACE_FRAMES) trace.shift();
  const canvas = $("pitch-trace"), g = canvas.getContext("2d");
  const low = Math.log(50), high = Math.log(1500);
  g.clearRect(0, 0, canvas.width, canvas.height);
  g.fillStyle = "#7fc8ff";
  trace.forEach((hz, i) => {
    if (hz <= 0) return;
    const y = canvas.height * (1 - (Math.log(hz) - low) / (high - low));
    g.fillRect(i * canvas.width / TRACE_FRAMES, y - 1.5, 3, 3);
  });
}

// -- controls ------------------------------------------------------------------------------

$("panic").addEventListener("click", () => send({ type: "panic" }));
$("patch-switch").addEventListener("click", () => send({ type: "patch", name: $("patch-list").value }));
$("learn-save").addEventListener("click", () => send({ type: "learn_save" }));
connect();
