// Opening an alert by its id: a link to the console with `#alert=<id>` (e.g. pasted from an agency's
// question or the ledger). An alert older than the console's incident window (72 h) has no incident
// here any more, but its stored evidence clip still plays and downloads (audited like any other).
(function () {
  const baseOpenIncident = openIncident;

  function openArchived(alertId) {
    state.detail = { kind: "archived", id: alertId, data: null };
    $("#detail-title").textContent = `Alert ${alertId}`;
    $("#detail-meta").textContent = "Older than the console's incident window: only its stored evidence clip is shown.";
    $("#detail-status").textContent = "archived";
    $("#detail-image").removeAttribute("src");
    $("#detail-canvas").getContext("2d").clearRect(0, 0, 9999, 9999);
    $("#detail-actions").hidden = true;
    $("#detail-history").replaceChildren();
    $("#detail-error").textContent = "";
    const share = document.getElementById("share-open");
    if (share) share.hidden = true;
    if (!$("#detail").open) $("#detail").showModal();
    if (window.cctvClip) window.cctvClip.show(alertId);
  }

  openIncident = async function openIncidentOrArchived(alertId) {
    try {
      await baseOpenIncident(alertId);
    } catch (error) {
      if (!/^no incident with alert_id/.test(error.message)) throw error;
      openArchived(alertId);
    }
  };

  function fromHash() {
    const match = /^#alert=(.+)$/.exec(location.hash);
    if (match && state.me) openIncident(decodeURIComponent(match[1])).catch((error) => { $("#detail-error").textContent = error.message; });
  }
  window.addEventListener("hashchange", fromHash);
  // A link opened before login: once the console has started (state.me is set), open it.
  const waitForLogin = setInterval(() => { if (state.me) { clearInterval(waitForLogin); fromHash(); } }, 200);
})();
