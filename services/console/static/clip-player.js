// The incident's evidence clip in the detail dialog: a plain <video> fed by the console (Range
// requests, so seeking works; S3 is never reached from the browser), the masked copy by default, and
// download buttons. Every playback and download is audited by the server.
"use strict";
(() => {
  const q = (s) => document.querySelector(s);
  const clip = { alertId: null, data: null };

  function url(segment, extra) {
    const params = new URLSearchParams(extra || {});
    const query = params.toString();
    return `/api/v1/incidents/${encodeURIComponent(clip.alertId)}/clip/${segment}.mp4${query ? "?" + query : ""}`;
  }

  function setOriginalLink() {
    const reason = q("#clip-reason").value.trim(), link = q("#clip-original");
    link.setAttribute("aria-disabled", reason ? "false" : "true");
    link.href = reason ? url(q("#clip-segment").value || 0, { variant: "original", reason, download: "1" }) : "#";
  }

  function load(segment) {
    const video = q("#clip-video");
    video.src = url(segment);
    q("#clip-download").href = url(segment, { download: "1" });
    setOriginalLink();
  }

  async function show(alertId) {
    clip.alertId = alertId;
    const section = q("#detail-clip"), status = q("#clip-status"), video = q("#clip-video");
    video.removeAttribute("src"); video.load();
    section.hidden = false;
    status.textContent = "looking for the clip…";
    let data;
    try {
      const response = await fetch(`/api/v1/incidents/${encodeURIComponent(alertId)}/clip`, { credentials: "same-origin" });
      data = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : response.statusText);
    } catch (error) {
      if (clip.alertId !== alertId) return;
      q("#clip-info").textContent = "";
      q("#clip-controls").hidden = true; video.hidden = true;
      status.textContent = error.message;
      return;
    }
    if (clip.alertId !== alertId) return;
    clip.data = data;
    const seconds = (data.clip.end_us - data.clip.start_us) / 1e6;
    q("#clip-info").textContent = `${seconds.toFixed(1)} s from ${new Date(data.clip.start_us / 1000).toLocaleTimeString()}` +
      `, ${data.segments.length} segment(s), masked`;
    q("#clip-segment").replaceChildren(...data.segments.map((s) => Object.assign(document.createElement("option"), {
      value: s.index, textContent: `segment ${s.index + 1} · ${new Date(s.start_us / 1000).toLocaleTimeString()}` })));
    q("#clip-segment").hidden = data.segments.length < 2;
    q("#clip-reason").hidden = q("#clip-original").hidden = !data.may_fetch_original;
    const playable = data.may_play && data.masked_ready;
    q("#clip-controls").hidden = !data.may_play; video.hidden = !playable;
    status.textContent = !data.may_play ? "Your role may not play evidence clips."
      : !data.masked_ready ? "The masked copy is being made; try again in a minute." : "";
    if (playable) load(0);
    else if (data.may_fetch_original) setOriginalLink();
  }

  function hide() {
    clip.alertId = null;
    const video = q("#clip-video");
    video.pause(); video.removeAttribute("src"); video.load();
    q("#detail-clip").hidden = true;
  }

  q("#clip-segment").addEventListener("change", (event) => load(event.target.value));
  q("#clip-reason").addEventListener("input", setOriginalLink);
  q("#clip-video").addEventListener("ended", () => {
    const select = q("#clip-segment"), next = Number(select.value) + 1;
    if (clip.data && next < clip.data.segments.length) { select.value = next; load(next); q("#clip-video").play(); }
  });
  q("#clip-video").addEventListener("error", () => {
    if (clip.alertId) q("#clip-status").textContent = "The clip could not be played (see the audit log or try the download).";
  });
  q("#detail").addEventListener("close", hide);
  window.cctvClip = { show, hide, state: clip };
})();
