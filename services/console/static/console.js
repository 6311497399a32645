// The control-room page: plain JS over the same /api/v1 the scripts use. No build step, no CDN.
"use strict";
const $ = (s) => document.querySelector(s);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
};
const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs) => { const n = document.createElementNS(SVG, tag); for (const k in attrs) n.setAttribute(k, attrs[k]); return n; };
const state = { me: null, csrf: null, view: "wall", tiles: [], incidents: [], selected: 0, known: null,
  muted: localStorage.getItem("cctv-muted") === "1", latency: [], pendingLatency: [], detail: null, pollers: new Map() };
window.cctvConsole = state; // for tests and the benchmark: latency samples live here

async function api(path, options = {}) {
  const headers = Object.assign({ "Accept": "application/json" }, options.headers || {});
  if (options.body !== undefined) { headers["Content-Type"] = "application/json"; options.body = JSON.stringify(options.body); }
  if (options.method && options.method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  const response = await fetch(path, Object.assign({}, options, { headers, credentials: "same-origin" }));
  if (response.status === 401 && !path.endsWith("/login")) { showLogin(); throw new Error("not logged in"); }
  const data = response.headers.get("content-type")?.includes("json") ? await response.json() : null;
  if (!response.ok) {
    const detail = data && data.detail;
    throw new Error(typeof detail === "string" ? detail : (detail ? detail.map((d) => d.msg).join("; ") : response.statusText));
  }
  return data;
}

function showLogin() {
  $("#console").hidden = true; $("#login").hidden = false;
  for (const timer of state.pollers.values()) clearTimeout(timer);
  state.pollers.clear();
  if (state.frameStream) { state.frameStream.close(); state.frameStream = null; }
  $("#username").focus();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  try {
    await api("/api/v1/login", { method: "POST", body: { username: $("#username").value, password: $("#password").value } });
    $("#password").value = "";
    await start();
  } catch (error) { $("#login-error").textContent = error.message; }
});

$("#logout").addEventListener("click", async () => { await api("/api/v1/logout", { method: "POST" }).catch(() => {}); showLogin(); });
$("#mute").addEventListener("click", () => toggleMute());
$("#maintenance").addEventListener("click", () => showView("health"));
function toggleMute() {
  state.muted = !state.muted; localStorage.setItem("cctv-muted", state.muted ? "1" : "0");
  $("#mute").textContent = state.muted ? "Sound: muted" : "Sound: on";
}

async function start() {
  const me = await api("/api/v1/me");
  state.me = me; state.csrf = me.csrf_token;
  $("#login").hidden = true; $("#console").hidden = false;
  $("#whoami").textContent = `${me.user.username} (${me.user.role})`;
  $("#audit-tab").hidden = !me.may_audit;
  $("#detail-actions").hidden = !me.may_act;
  $("#mute").textContent = state.muted ? "Sound: muted" : "Sound: on";
  if ("Notification" in window && Notification.permission === "default") Notification.requestPermission().catch(() => {});
  pollWall();
  openFrameStream();
  if (!state.latencyTimer) state.latencyTimer = setInterval(flushLatency, 5000);
}

// ---- wall ---------------------------------------------------------------------------------------
async function pollWall() {
  try {
    const wall = await api("/api/v1/wall");
    renderWall(wall);
    const incidents = await api("/api/v1/incidents?state=open");
    renderIncidentList(incidents.incidents);
    $("#updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) { $("#updated").textContent = "update failed: " + error.message; }
  if (!$("#console").hidden) state.pollers.set("wall", setTimeout(pollWall, 1000));
}

function renderWall(wall) {
  const box = $("#wall");
  const openIds = new Set(wall.tiles.filter((t) => t.incident).map((t) => t.incident.alert_id));
  const fresh = state.known === null ? [] : [...openIds].filter((id) => !state.known.has(id));
  state.known = new Set([...(state.known || []), ...openIds]);
  // A tile that just popped stays in front for its highlight time, whatever its severity rank.
  const poppedUntil = (id) => (box.querySelector(`.tile[data-camera="${CSS.escape(id)}"]`) || {}).popUntil || 0;
  wall.tiles.sort((a, b) => (poppedUntil(b.camera_id) > Date.now()) - (poppedUntil(a.camera_id) > Date.now()));
  const order = wall.tiles.map((t) => t.camera_id);
  for (const tile of box.querySelectorAll(".tile")) {
    if (!order.includes(tile.dataset.camera)) { stopTile(tile.dataset.camera); tile.remove(); }
  }
  wall.tiles.forEach((t, index) => {
    let tile = box.querySelector(`.tile[data-camera="${CSS.escape(t.camera_id)}"]`);
    if (!tile) tile = makeTile(t.camera_id);
    tile.data = t;
    tile.className = "tile" + (t.incident ? ` incident sev-${t.incident.severity}` : "") + (tile.popUntil > Date.now() ? " popped" : "");
    tile.dataset.incident = t.incident ? t.incident.alert_id : "";
    tile.querySelector(".name").textContent = t.name;
    tile.querySelector(".state").textContent = t.incident ? `${t.incident.event_type} · ${t.incident.status}` : `${t.activity.toLowerCase()} · ${t.connection.toLowerCase()}`;
    const badge = tile.querySelector(".badge");
    badge.hidden = !t.incident; badge.textContent = t.incident ? t.incident.severity : "";
    if (box.children[index] !== tile) box.insertBefore(tile, box.children[index] || null);
    const img = tile.querySelector("img");
    // No live frame (camera quiet or gone): an incident tile shows its evidence snapshot instead.
    if (!img.dataset.sequence && t.incident && t.incident.has_snapshot && img.dataset.snapshot !== t.incident.alert_id) {
      img.dataset.snapshot = t.incident.alert_id;
      img.src = `/api/v1/incidents/${encodeURIComponent(t.incident.alert_id)}/snapshot.jpg`;
    }
    tile.querySelector(".no-frame").hidden = Boolean(img.dataset.sequence || img.dataset.snapshot);
    rememberDetections(tile, t.detections);
    drawBoxes(tile.querySelector("canvas"), img, tile);
  });
  for (const id of fresh) popIncident(wall.tiles.find((t) => t.incident && t.incident.alert_id === id));
  $("#idle").textContent = `${wall.idle_count} idle camera${wall.idle_count === 1 ? "" : "s"} collapsed · ${wall.open_incidents} open incident(s)`;
  $("#open-count").textContent = wall.open_incidents;
  const trouble = wall.platform.recent_trouble[0];
  $("#maintenance").textContent = wall.maintenance ? `${wall.maintenance} camera(s) need maintenance` : "";
  $("#platform").textContent = trouble ? `⚠ ${trouble.service} ${trouble.event.toLowerCase()} ${trouble.detail || ""} (${new Date(trouble.timestamp).toLocaleTimeString()})` : "";
  const lat = wall.latency;
  const mine = percentile(state.latency, 0.5);
  $("#latency").textContent = `capture→pixels p50 ${mine === null ? "–" : Math.round(mine) + " ms"} here` +
    (lat.p50_ms !== null ? ` · all screens p50 ${Math.round(lat.p50_ms)} ms, p95 ${Math.round(lat.p95_ms)} ms (${lat.count})` : "");
}

function makeTile(cameraId) {
  const tile = el("div", { className: "tile", tabIndex: 0 },
    el("img", { alt: "" }), el("canvas"), el("span", { className: "no-frame", textContent: "waiting for a frame…" }),
    el("span", { className: "badge" }),
    el("div", { className: "label" }, el("span", { className: "name" }), el("span", { className: "state" })));
  tile.dataset.camera = cameraId;
  tile.addEventListener("click", () => openCamera(cameraId));
  pollFrame(tile, cameraId);
  return tile;
}

function stopTile(cameraId) { clearTimeout(state.pollers.get("frame:" + cameraId)); state.pollers.delete("frame:" + cameraId); }

// One event stream for the whole wall names each camera whose frame changed (browsers allow only ~6
// connections per host, so not one open request per tile); each tile then fetches its frame.
function openFrameStream() {
  if (state.frameStream) state.frameStream.close();
  state.frameStream = new EventSource("/api/v1/wall/frames");
  state.frameStream.addEventListener("frame", (event) => {
    const notice = JSON.parse(event.data);
    const tile = $(`#wall .tile[data-camera="${CSS.escape(notice.camera_id)}"]`);
    if (!tile) return;
    rememberDetections(tile, notice.detections);
    if (!(tile.frames && tile.frames.has(notice.sequence))) loadFrame(tile, notice.camera_id);
    else showBest(tile);
  });
}

// A tile without a frame yet asks once a second (a camera that just became active may have none).
function pollFrame(tile, cameraId) {
  if (!tile.isConnected || $("#console").hidden) return;
  if (!tile.querySelector("img").dataset.sequence) loadFrame(tile, cameraId);
  state.pollers.set("frame:" + cameraId, setTimeout(() => pollFrame(tile, cameraId), 1000));
}

async function loadFrame(tile, cameraId) {
  if (tile.loading) { tile.again = true; return; } // coalesce: fetch once more after this one
  tile.loading = true;
  try {
    const response = await fetch(`/api/v1/cameras/${encodeURIComponent(cameraId)}/frame.jpg`, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 200) {
      const sequence = Number(response.headers.get("X-Frame-Sequence"));
      const frame = { sequence, captureUs: Number(response.headers.get("X-Capture-Time-Us")),
        url: URL.createObjectURL(await response.blob()) };
      tile.frames = tile.frames || new Map();
      if (tile.frames.has(sequence)) URL.revokeObjectURL(frame.url); else tile.frames.set(sequence, frame);
      await showBest(tile);
    }
  } catch (error) { /* the next notice or the per-second check retries */ }
  tile.loading = false;
  if (tile.again) { tile.again = false; loadFrame(tile, cameraId); }
}

// Boxes belong to one frame, and the detector answers after the frame exists. A tile shows the newest
// frame whose boxes are known, unless that is more than ANNOTATED_LAG_MS behind the newest frame (a slow
// or absent detector): then the newest frame, without boxes. Never a frame older than the one shown.
const ANNOTATED_LAG_MS = 1500, FRAMES_KEPT = 6;
async function showBest(tile) {
  const frames = [...(tile.frames || new Map()).values()].sort((a, b) => a.sequence - b.sequence);
  if (!frames.length) return;
  const newest = frames[frames.length - 1];
  const annotated = frames.filter((f) => tile.boxes && tile.boxes.has(String(f.sequence))).pop();
  const chosen = annotated && newest.captureUs - annotated.captureUs <= ANNOTATED_LAG_MS * 1000 ? annotated : newest;
  const img = tile.querySelector("img");
  const shown = Number(img.dataset.sequence || -1);
  if (chosen.sequence < shown) return;
  if (chosen.sequence === shown) { drawBoxes(tile.querySelector("canvas"), img, tile); return; }
  await new Promise((resolve) => { img.onload = resolve; img.onerror = resolve; img.src = chosen.url; });
  img.dataset.sequence = chosen.sequence; img.dataset.captureUs = chosen.captureUs;
  drawBoxes(tile.querySelector("canvas"), img, tile);
  await new Promise((resolve) => requestAnimationFrame(resolve)); // pixels are on screen after this frame
  const latency = Date.now() - chosen.captureUs / 1000;
  state.latency.push(latency); state.pendingLatency.push(latency);
  if (state.latency.length > 500) state.latency.shift();
  for (const f of frames) { // forget frames older than the one shown, and the oldest beyond the budget
    if (f.sequence < chosen.sequence || tile.frames.size > FRAMES_KEPT) { URL.revokeObjectURL(f.url); tile.frames.delete(f.sequence); }
  }
}

function rememberDetections(tile, detections) {
  if (!detections) return;
  tile.boxes = tile.boxes || new Map();
  tile.boxes.set(String(detections.sequence), detections.objects);
  while (tile.boxes.size > 16) tile.boxes.delete(tile.boxes.keys().next().value);
}

// The detector reports down to its own low threshold (for tracking); an operator wants the sure ones.
const BOX_MIN_SCORE = 0.4;
function drawBoxes(canvas, img, tile) {
  const width = img.naturalWidth, height = img.naturalHeight;
  if (!width) return;
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, width, height);
  const objects = tile.boxes && tile.boxes.get(img.dataset.sequence);
  if (!objects) return;
  ctx.lineWidth = Math.max(2, width / 300); ctx.font = `${Math.max(12, width / 50)}px sans-serif`;
  for (const o of objects.filter((o) => o.score >= BOX_MIN_SCORE)) {
    const x = o.box.x1 * width, y = o.box.y1 * height, w = (o.box.x2 - o.box.x1) * width, h = (o.box.y2 - o.box.y1) * height;
    ctx.strokeStyle = o.class_name === "person" ? "#3dff8b" : "#3d8bfd"; ctx.strokeRect(x, y, w, h);
    ctx.fillStyle = ctx.strokeStyle; ctx.fillText(`${o.class_name} ${Math.round(o.score * 100)}%`, x + 2, Math.max(12, y - 3));
  }
}

function popIncident(tile) {
  if (!tile) return;
  const node = $(`#wall .tile[data-camera="${CSS.escape(tile.camera_id)}"]`);
  if (node) { node.popUntil = Date.now() + 10000; node.classList.add("popped"); $("#wall").prepend(node); }
  if (!state.muted) beep();
  if ("Notification" in window && Notification.permission === "granted" && !state.muted) {
    new Notification(`${tile.incident.severity}: ${tile.incident.event_type}`, { body: `${tile.name}: ${tile.incident.description}`, tag: tile.incident.alert_id });
  }
}

function beep() {
  try {
    const audio = new (window.AudioContext || window.webkitAudioContext)();
    const osc = audio.createOscillator(); osc.frequency.value = 880; osc.connect(audio.destination);
    osc.start(); osc.stop(audio.currentTime + 0.25);
  } catch (error) { /* no audio device */ }
}

function percentile(values, p) {
  if (!values.length) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

async function flushLatency() {
  if (!state.pendingLatency.length) return;
  const samples = state.pendingLatency.splice(0, 100);
  await api("/api/v1/latency", { method: "POST", body: { samples_ms: samples } }).catch(() => {});
}

// ---- incidents ----------------------------------------------------------------------------------
function renderIncidentList(incidents) {
  state.incidents = incidents;
  state.selected = Math.min(state.selected, Math.max(0, incidents.length - 1));
  // Rebuild only on change: a row replaced every second would swallow clicks in progress.
  const signature = JSON.stringify([state.selected, incidents.map((i) => [i.alert_id, i.status, i.assignee, i.severity, i.description])]);
  if (signature === state.listSignature) return;
  state.listSignature = signature;
  const list = $("#incident-list");
  list.replaceChildren(...incidents.map((i, index) => {
    const row = el("div", { className: `incident-row status-${i.status}` + (index === state.selected ? " selected" : "") },
      el("span", { className: `sev ${i.severity}`, textContent: i.severity }), " ",
      el("span", { className: "status", textContent: i.status + (i.assignee ? ` → ${i.assignee}` : "") }),
      el("div", { textContent: `${i.camera_name || i.camera_id}: ${i.description}` }));
    row.dataset.alert = i.alert_id;
    row.addEventListener("click", () => { state.selected = index; openIncident(i.alert_id); });
    return row;
  }));
  if (!incidents.length) list.append(el("p", { textContent: "No open incidents." }));
}

async function openIncident(alertId) {
  const incident = await api(`/api/v1/incidents/${encodeURIComponent(alertId)}`);
  state.detail = { kind: "incident", id: alertId, data: incident };
  $("#detail-title").textContent = `${incident.severity} ${incident.event_type} · ${incident.camera_name || incident.camera_id} · ${incident.zone_name}`;
  $("#detail-meta").textContent = `${incident.description}. Status: ${incident.status}${incident.assignee ? ", assigned to " + incident.assignee : ""}` +
    `${incident.false_alarm ? " (false alarm)" : ""}. Started ${new Date(incident.started_at_us / 1000).toLocaleString()}` +
    `${incident.alert_active ? ", still active" : ", ended"}.`;
  $("#detail-status").textContent = incident.status;
  $("#detail-image").src = incident.has_snapshot ? `/api/v1/incidents/${encodeURIComponent(alertId)}/snapshot.jpg` : "";
  $("#detail-canvas").getContext("2d").clearRect(0, 0, 9999, 9999);
  $("#detail-actions").hidden = !state.me.may_act;
  $('#detail-actions button[data-action="reopen"]').hidden = !state.me.may_reopen || incident.status !== "closed";
  $("#detail-history").replaceChildren(...incident.actions.map((a) => el("li", {
    textContent: `${new Date(a.timestamp_ms).toLocaleTimeString()} ${a.operator}: ${a.action}${a.assignee ? " → " + a.assignee : ""}${a.comment ? " — " + a.comment : ""}` })));
  $("#detail-error").textContent = "";
  if (!$("#detail").open) $("#detail").showModal();
  if (window.cctvClip) window.cctvClip.show(alertId);
}

async function openCamera(cameraId) {
  let camera;
  try { camera = await api(`/api/v1/cameras/${encodeURIComponent(cameraId)}`); }
  catch (error) { alert(error.message); return; }
  state.detail = { kind: "camera", id: cameraId, data: camera };
  if (window.cctvClip) window.cctvClip.hide();
  $("#detail-title").textContent = `${camera.name} (${camera.camera_id}) · ${camera.connection.toLowerCase()} · ${camera.activity.toLowerCase()}`;
  $("#detail-meta").textContent = `Recent incidents: ${camera.recent_incidents.length}`;
  $("#detail-actions").hidden = true;
  $("#detail-history").replaceChildren(...camera.recent_incidents.map((i) => {
    const li = el("li", { textContent: `${new Date(i.started_at_us / 1000).toLocaleTimeString()} ${i.severity} ${i.event_type} — ${i.status}` });
    li.addEventListener("click", () => openIncident(i.alert_id));
    return li;
  }));
  $("#detail-error").textContent = "";
  if (!$("#detail").open) $("#detail").showModal();
  refreshDetailFrame(cameraId);
}

async function refreshDetailFrame(cameraId) {
  if (!$("#detail").open || !state.detail || state.detail.id !== cameraId) return;
  const response = await fetch(`/api/v1/cameras/${encodeURIComponent(cameraId)}/frame.jpg`, { cache: "no-store" }).catch(() => null);
  if (response && response.ok) {
    const img = $("#detail-image"), old = img.src;
    img.src = URL.createObjectURL(await response.blob());
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
  }
  setTimeout(() => refreshDetailFrame(cameraId), 500);
}

$("#detail-close").addEventListener("click", () => $("#detail").close());
for (const button of document.querySelectorAll("#detail-actions button")) {
  button.addEventListener("click", () => act(button.dataset.action));
}

async function act(action, alertId) {
  const id = alertId || (state.detail && state.detail.kind === "incident" ? state.detail.id : null);
  if (!id) return;
  const body = { action };
  if (action === "assign") body.assignee = $("#assignee").value;
  if (action === "comment") body.comment = $("#comment").value;
  try {
    await api(`/api/v1/incidents/${encodeURIComponent(id)}/actions`, { method: "POST", body });
    if (action === "comment") $("#comment").value = "";
    if ($("#detail").open && state.detail && state.detail.id === id) await openIncident(id);
    const incidents = await api("/api/v1/incidents?state=open");
    renderIncidentList(incidents.incidents);
  } catch (error) {
    if ($("#detail").open) $("#detail-error").textContent = error.message; else $("#updated").textContent = error.message;
  }
}

// ---- views --------------------------------------------------------------------------------------
for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));
function showView(view) {
  state.view = view;
  for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.view === view);
  for (const node of document.querySelectorAll(".view")) node.hidden = node.id !== `view-${view}`;
  ({ incidents: loadIncidents, map: loadMap, health: loadHealth, audit: loadAudit }[view] || (() => {}))();
}

function row(cells, onClick) {
  const tr = el("tr", {}, ...cells.map((c) => el("td", { textContent: c === null || c === undefined ? "" : String(c) })));
  if (onClick) tr.addEventListener("click", onClick);
  return tr;
}
const when = (ms) => (ms ? new Date(ms).toLocaleString() : "");

async function loadIncidents() {
  const data = await api(`/api/v1/incidents?state=${$("#incident-filter").value}`);
  $("#incident-table tbody").replaceChildren(...data.incidents.map((i) => row(
    [i.severity, i.camera_name || i.camera_id, i.description, i.status + (i.false_alarm ? " (false alarm)" : ""), i.assignee, when(i.started_at_us / 1000)],
    () => openIncident(i.alert_id))));
  const fa = await api("/api/v1/false-alarms");
  $("#false-alarm-table tbody").replaceChildren(...fa.false_alarms.map((f) => row([f.camera_id, f.zone_id, f.rule_id, f.false_alarms])));
}
$("#incident-filter").addEventListener("change", loadIncidents);

async function loadHealth() {
  const h = await api("/api/v1/health");
  $("#health-summary").textContent = `${h.total} cameras: ` + Object.entries(h.connection_counts).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ");
  $("#maintenance-table tbody").replaceChildren(...h.maintenance.map((m) => row([m.camera_id, m.kind, m.reason, "since " + when(m.since_ms)])));
  $("#problem-table tbody").replaceChildren(...h.problems.map((p) => row([p.camera_id, p.connection, p.connection_reason, "since " + when(p.connection_since_ms)])));
  $("#lag-table tbody").replaceChildren(...Object.entries(h.pipeline_lag).map(([group, l]) => row([group, l.topic, l.lag === null ? l.detail : `${l.lag} records behind`])));
  $("#service-table tbody").replaceChildren(...h.platform.services.map((e) => row([e.service, e.event, e.detail, `restarts ${e.restarts}`, when(e.timestamp)])));
}

async function loadAudit() {
  const a = await api("/api/v1/audit?limit=300");
  $("#audit-table tbody").replaceChildren(...a.records.map((r) => row([when(r.timestamp), r.actor, r.what, r.outcome, r.camera_id, r.alert_id && r.alert_id.slice(0, 8), r.detail, r.client_address])));
}

// ---- map: cameras as SVG over an offline vector layer of their sites ----------------------------
let mapFrame = null;
async function loadMap(search) {
  const data = await api("/api/v1/cameras");
  const located = data.cameras.filter((c) => c.location);
  const map = $("#map");
  map.replaceChildren();
  if (!located.length) { map.append(svg("text", { x: 20, y: 40, fill: "#8b96a5" })); map.lastChild.textContent = "No camera has a location."; return; }
  const lats = located.map((c) => c.location.lat), lons = located.map((c) => c.location.lon);
  const pad = 0.0015;
  const box = { s: Math.min(...lats) - pad, n: Math.max(...lats) + pad, w: Math.min(...lons) - pad, e: Math.max(...lons) + pad };
  const k = Math.cos(((box.s + box.n) / 2) * Math.PI / 180); // equirectangular: shrink longitudes by cos(lat)
  const scale = Math.min(1000 / ((box.e - box.w) * k), 640 / (box.n - box.s));
  const project = (lat, lon) => [(lon - box.w) * k * scale, (box.n - lat) * scale];
  mapFrame = { box, k, scale };
  const sites = new Map();
  for (const c of located) { const s = sites.get(c.site_id) || []; s.push(c); sites.set(c.site_id, s); }
  for (const [site, cams] of sites) { // the base layer: each site as a block around its cameras
    const pts = cams.map((c) => project(c.location.lat, c.location.lon));
    const x = Math.min(...pts.map((p) => p[0])) - 14, y = Math.min(...pts.map((p) => p[1])) - 14;
    const w = Math.max(...pts.map((p) => p[0])) - x + 14, h = Math.max(...pts.map((p) => p[1])) - y + 14;
    map.append(svg("rect", { class: "site", x, y, width: w, height: h, rx: 6 }));
    const label = svg("text", { class: "site-label", x: x + 2, y: y - 3 }); label.textContent = site || "(no site)"; map.append(label);
  }
  if (search) {
    const [cx, cy] = project(search.lat, search.lon);
    map.append(svg("circle", { class: "search", cx, cy, r: (search.radius / 111320) * scale }));
  }
  for (const c of located) {
    const [x, y] = project(c.location.lat, c.location.lon);
    const dot = svg("circle", { class: `cam conn-${c.connection}`, cx: x, cy: y, r: 6 });
    dot.dataset.camera = c.camera_id;
    const title = svg("title", {}); title.textContent = `${c.name} · ${c.connection} · ${c.activity}${c.open_incidents ? " · " + c.open_incidents + " open incident(s)" : ""}`;
    dot.append(title);
    dot.addEventListener("click", (event) => { event.stopPropagation(); openCamera(c.camera_id); });
    map.append(dot);
    if (c.open_incidents) map.append(svg("circle", { class: "incident-ring", cx: x, cy: y, r: 11 }));
  }
}

$("#map").addEventListener("click", (event) => {
  if (!mapFrame) return;
  const point = $("#map").createSVGPoint(); point.x = event.clientX; point.y = event.clientY;
  const p = point.matrixTransform($("#map").getScreenCTM().inverse());
  const { box, k, scale } = mapFrame;
  nearSearch(box.n - p.y / scale, box.w + p.x / (k * scale));
});
$("#near-go").addEventListener("click", () => nearSearch(Number($("#near-lat").value), Number($("#near-lon").value)));

async function nearSearch(lat, lon) {
  const radius = Number($("#radius").value);
  try {
    const data = await api(`/api/v1/cameras?lat=${lat}&lon=${lon}&radius_m=${radius}`);
    $("#near-list").replaceChildren(...data.cameras.map((c) => el("li", { textContent: `${c.name} (${c.camera_id}) — ${Math.round(c.distance_m)} m, ${c.connection.toLowerCase()}` })));
    if (!data.cameras.length) $("#near-list").replaceChildren(el("li", { textContent: `No camera within ${radius} m of ${lat.toFixed(5)}, ${lon.toFixed(5)}.` }));
    loadMap({ lat, lon, radius });
  } catch (error) { $("#near-list").replaceChildren(el("li", { textContent: error.message })); }
}

// ---- keyboard -----------------------------------------------------------------------------------
document.addEventListener("keydown", (event) => {
  if ($("#console").hidden || ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName)) return;
  const current = state.incidents[state.selected];
  const keys = {
    j: () => { state.selected = Math.min(state.incidents.length - 1, state.selected + 1); renderIncidentList(state.incidents); },
    k: () => { state.selected = Math.max(0, state.selected - 1); renderIncidentList(state.incidents); },
    Enter: () => current && openIncident(current.alert_id), o: () => current && openIncident(current.alert_id),
    a: () => act("acknowledge", detailOr(current)), c: () => act("close", detailOr(current)), x: () => act("false_alarm", detailOr(current)),
    f: () => current && openCamera(current.camera_id), m: toggleMute,
    1: () => showView("wall"), 2: () => showView("incidents"), 3: () => showView("map"), 4: () => showView("health"),
    5: () => state.me.may_audit && showView("audit"),
  };
  if (keys[event.key]) { event.preventDefault(); keys[event.key](); }
});
const detailOr = (current) => (state.detail && state.detail.kind === "incident" && $("#detail").open ? state.detail.id : current && current.alert_id);

api("/api/v1/me").then(start, showLogin);
