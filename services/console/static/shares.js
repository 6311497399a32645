// Live-video shares and the release ledger (supervisors, admins): the Share dialog on an incident, the
// Shares view (active links, revoke) and the ledger filters with CSV export on the Audit view.
// Plain JS over /api/v1, loaded after console.js (uses its $, el, api, state, row, when, showView).
"use strict";
(() => {
  const link = el("link", { rel: "stylesheet", href: "/static/shares.css" });
  document.head.append(link);
  const may = () => state.me && state.me.may_audit; // supervisor or admin: the roles that may share
  const fmtMin = (s) => (s >= 3600 ? `${s / 3600} h` : `${Math.round(s / 60)} min`);

  // ---- the Shares view ------------------------------------------------------------------------------
  const tab = el("button", { className: "tab", title: "Shares (6)", textContent: "Shares", hidden: true });
  tab.dataset.view = "shares";
  tab.addEventListener("click", () => showView("shares"));
  $("header nav").append(tab);
  const filter = el("select", { id: "share-filter" }, el("option", { value: "live", textContent: "live" }),
    el("option", { value: "ended", textContent: "ended" }), el("option", { value: "all", textContent: "all" }));
  const view = el("div", { id: "view-shares", className: "view", hidden: true },
    el("p", {}, el("label", {}, "Show ", filter), " ", el("span", { id: "share-count", className: "muted" })),
    el("table", { id: "share-table" },
      el("thead", {}, el("tr", {}, ...["Camera", "Agency", "Purpose", "Masked", "Created by", "Expires", "Status", "Link", ""].map(
        (h) => el("th", { textContent: h })))),
      el("tbody")),
    el("p", { id: "share-error", role: "alert", className: "error" }));
  $("main").append(view);
  filter.addEventListener("change", () => loadShares());

  async function loadShares() {
    $("#share-error").textContent = "";
    try {
      const data = await api(`/api/v1/shares?status=${filter.value}`);
      $("#share-count").textContent = `${data.count} share(s)`;
      $("#share-table tbody").replaceChildren(...data.shares.map(shareRow));
    } catch (error) { $("#share-error").textContent = error.message; }
  }

  function shareRow(s) {
    const tr = row([s.camera_id, s.agency, s.purpose, s.masked ? "masked" : "UNMASKED", s.created_by, when(s.expires_at), s.status]);
    const linkCell = el("td");
    if (s.url) linkCell.append(copyButton(s.url, "copy link"), " ", copyButton(s.playlist_url, "copy .m3u8"));
    const actions = el("td");
    if (s.status === "live") {
      const revoke = el("button", { textContent: "Revoke", className: "danger" });
      revoke.addEventListener("click", async (event) => {
        event.stopPropagation();
        if (!confirm(`Revoke the share of ${s.camera_id} with ${s.agency}? The link stops within seconds.`)) return;
        try { await api(`/api/v1/shares/${encodeURIComponent(s.share_id)}`, { method: "DELETE" }); }
        catch (error) { $("#share-error").textContent = error.message; }
        loadShares();
      });
      actions.append(revoke);
    }
    tr.append(linkCell, actions);
    return tr;
  }

  function copyButton(text, label) {
    const button = el("button", { textContent: label, title: text });
    button.addEventListener("click", async (event) => {
      event.stopPropagation();
      try { await navigator.clipboard.writeText(text); button.textContent = "copied"; }
      catch { window.prompt("Copy the link:", text); }
    });
    return button;
  }

  // ---- the Share dialog on an incident --------------------------------------------------------------
  const dialog = el("dialog", { id: "share-dialog" });
  dialog.setAttribute("aria-labelledby", "share-title");
  dialog.innerHTML = `
    <button class="close" id="share-close" title="close (Esc)">✕</button>
    <h2 id="share-title">Share live video</h2>
    <form id="share-form">
      <fieldset><legend>Cameras near <span id="share-centre"></span></legend>
        <label class="inline">within <input id="share-radius" type="number" min="1" max="5000" value="200"> m</label>
        <button type="button" id="share-search">search</button>
        <ul id="share-cameras"></ul></fieldset>
      <label>Agency <select id="share-agency" required></select></label>
      <label class="inline"><input type="checkbox" id="share-unmasked"> release unmasked (audited; only agencies allowed by the routing file)</label>
      <label>Purpose <textarea id="share-purpose" required minlength="3" maxlength="500"
        placeholder="why this video is released, e.g. 112 report 2026-1130-0042: person collapsed"></textarea></label>
      <label>Link lifetime <select id="share-lifetime"></select></label>
      <p id="share-dialog-error" role="alert" class="error"></p>
      <button type="submit" id="share-submit">Create links</button>
    </form>
    <ol id="share-links"></ol>`;
  document.body.append(dialog);
  const openButton = el("button", { id: "share-open", textContent: "Share live video…", title: "s", hidden: true });
  $("#detail-status").closest("div").prepend(openButton);
  openButton.addEventListener("click", () => openShareDialog());
  $("#share-close").addEventListener("click", () => dialog.close());
  $("#share-search").addEventListener("click", () => searchCameras());
  let centre = null;
  let agencies = [];

  async function openShareDialog() {
    const incident = state.detail && state.detail.kind === "incident" ? state.detail.data : null;
    if (!incident || !may()) return;
    $("#share-dialog-error").textContent = "";
    $("#share-links").replaceChildren();
    $("#share-purpose").value = "";
    const cameras = await api("/api/v1/cameras");
    const camera = cameras.cameras.find((c) => c.camera_id === incident.camera_id);
    centre = camera && camera.location ? { lat: camera.location.lat, lon: camera.location.lon, camera: incident.camera_id } : { camera: incident.camera_id };
    $("#share-centre").textContent = `${incident.camera_name || incident.camera_id}`;
    const choice = await api("/api/v1/shares/agencies");
    agencies = choice.agencies;
    $("#share-agency").replaceChildren(...agencies.map((a) => el("option", { value: a.name, textContent: a.name + (a.unmasked_allowed ? " (may receive unmasked)" : "") })));
    const lifetimes = [15 * 60, 30 * 60, 60 * 60, 2 * 3600, 4 * 3600, 8 * 3600, 24 * 3600].filter((s) => s <= choice.max_lifetime_s);
    $("#share-lifetime").replaceChildren(...lifetimes.map((s) => el("option", { value: s, textContent: fmtMin(s), selected: s === choice.default_lifetime_s })));
    syncUnmasked();
    if (!dialog.open) dialog.showModal();
    await searchCameras();
    $("#share-purpose").focus();
  }

  async function searchCameras() {
    const list = $("#share-cameras");
    let rows = [];
    if (centre && centre.lat !== undefined) {
      const radius = Number($("#share-radius").value) || 200;
      rows = (await api(`/api/v1/cameras?lat=${centre.lat}&lon=${centre.lon}&radius_m=${radius}`)).cameras;
    }
    if (!rows.some((c) => c.camera_id === centre.camera)) rows.unshift({ camera_id: centre.camera, distance_m: 0 });
    list.replaceChildren(...rows.map((c) => el("li", {}, el("label", { className: "inline" },
      el("input", { type: "checkbox", value: c.camera_id, checked: true }),
      ` ${c.name || c.camera_id}${c.distance_m ? ` · ${Math.round(c.distance_m)} m` : " · the incident's camera"}`))));
  }

  function syncUnmasked() {
    const chosen = agencies.find((a) => a.name === $("#share-agency").value);
    const box = $("#share-unmasked");
    box.disabled = !(chosen && chosen.unmasked_allowed);
    if (box.disabled) box.checked = false;
  }
  $("#share-agency").addEventListener("change", syncUnmasked);

  $("#share-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("#share-dialog-error").textContent = "";
    const cameraIds = [...document.querySelectorAll("#share-cameras input:checked")].map((i) => i.value);
    if (!cameraIds.length) { $("#share-dialog-error").textContent = "choose at least one camera"; return; }
    try {
      const created = await api("/api/v1/shares", { method: "POST", body: {
        camera_ids: cameraIds, agency: $("#share-agency").value, purpose: $("#share-purpose").value,
        lifetime_s: Number($("#share-lifetime").value), unmasked: $("#share-unmasked").checked,
        alert_id: state.detail && state.detail.id } });
      $("#share-links").replaceChildren(...created.shares.map((s) => el("li", {},
        `${s.camera_id} → ${s.agency} (${s.masked ? "masked" : "UNMASKED"}, until ${when(s.expires_at)}) `,
        copyButton(s.url, "copy link"), " ", copyButton(s.playlist_url, "copy .m3u8"))));
    } catch (error) { $("#share-dialog-error").textContent = error.message; }
  });

  // ---- the ledger on the Audit view: filters over the whole period, CSV for the regulator ------------
  const ledgerForm = el("form", { id: "ledger-form" });
  ledgerForm.innerHTML = `
    <label>Agency or user <input id="ledger-agency" size="14"></label>
    <label>Camera <input id="ledger-camera" size="14"></label>
    <label>Act <select id="ledger-what"><option value="">all</option>
      <option value="share">share</option><option value="webhook">webhook</option><option value="evidence">evidence</option><option value="live_view">live_view</option><option value="login">login</option><option value="access_denied">access_denied</option><option value="ledger">ledger</option></select></label>
    <label>From <input id="ledger-since" value="24h" size="18" title="ISO 8601 time (UTC) or a duration ago: 30m, 24h, 7d"></label>
    <label>Until <input id="ledger-until" size="18" placeholder="now"></label>
    <button type="submit">Apply</button> <a id="ledger-csv" class="button" download>Download CSV</a>
    <span id="ledger-count" class="muted"></span> <span id="ledger-error" role="alert" class="error"></span>`;
  $("#view-audit").prepend(ledgerForm);

  function ledgerQuery() {
    const params = new URLSearchParams();
    for (const [key, id] of [["agency", "#ledger-agency"], ["camera_id", "#ledger-camera"], ["what", "#ledger-what"], ["since", "#ledger-since"], ["until", "#ledger-until"]]) {
      const value = $(id).value.trim();
      if (value) params.set(key, value);
    }
    return params;
  }
  function updateCsvLink() { const p = ledgerQuery(); p.set("format", "csv"); $("#ledger-csv").href = `/api/v1/ledger?${p}`; }
  ledgerForm.addEventListener("input", updateCsvLink);
  ledgerForm.addEventListener("submit", (event) => { event.preventDefault(); loadAudit(); });

  // The Audit view shows the ledger of the chosen period (the whole topic, not the recent tail).
  loadAudit = async function loadLedger() {
    updateCsvLink();
    $("#ledger-error").textContent = "";
    try {
      const params = ledgerQuery(); params.set("limit", "500");
      const data = await api(`/api/v1/ledger?${params}`);
      $("#ledger-count").textContent = `${data.count} record(s)${data.count > 500 ? ", newest 500 shown" : ""}`;
      $("#audit-table tbody").replaceChildren(...data.records.map((r) => row([when(r.timestamp), r.actor, r.what, r.outcome, r.camera_id, r.alert_id && r.alert_id.slice(0, 8), r.detail, r.client_address])));
    } catch (error) { $("#ledger-error").textContent = error.message; }
  };

  // ---- wiring into the page -------------------------------------------------------------------------
  const baseShowView = showView;
  showView = function showViewWithShares(name) { baseShowView(name); if (name === "shares") loadShares(); };
  const baseOpenIncident = openIncident;
  openIncident = async function openIncidentWithShare(alertId) { await baseOpenIncident(alertId); openButton.hidden = !may(); };
  const baseOpenCamera = openCamera;
  openCamera = async function openCameraWithoutShare(cameraId) { openButton.hidden = true; await baseOpenCamera(cameraId); };
  const watchMe = setInterval(() => { if (state.me) { tab.hidden = !may(); } }, 500);
  window.addEventListener("beforeunload", () => clearInterval(watchMe));
  document.addEventListener("keydown", (event) => {
    if ($("#console").hidden || ["INPUT", "TEXTAREA", "SELECT"].includes(event.target.tagName) || !may()) return;
    if (event.key === "6") { event.preventDefault(); showView("shares"); }
    if (event.key === "s" && $("#detail").open && !openButton.hidden) { event.preventDefault(); openShareDialog(); }
  });
  window.cctvShares = { openShareDialog, loadShares };
})();
