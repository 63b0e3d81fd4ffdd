// Live sync status, shared by the products page (app.js) and another source's page (rows.js).
// A row is a <tbody data-id> holding a .badge (and a .sync-reason); while any row on the page is
// pending, its badge polls GET /api/sync/statuses until Emu has indexed it. The header's totals
// (#sync-summary dd[data-key], named by GET /api/sync/status's fields) refresh every few seconds.
window.SyncStatus = (function () {
  "use strict";

  var POLL_MS = 500; // while any row is pending
  var SUMMARY_MS = 5000; // header totals and queue lag
  var pollTimer = null;
  var summaryTimer = null;

  // The JSON of a GET, or null when the server refused it (e.g. 429: the next tick tries again).
  function getJson(url) {
    return fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then(
      function (response) { return response.ok ? response.json() : null; }
    );
  }

  function rowWithId(id) {
    return document.querySelector('tbody[data-id="' + id + '"]');
  }

  // Show a row's sync state: indexed, pending, failed (with the reason, for editors) or deleted.
  function setBadge(row, sync) {
    var state = (sync && sync.status) || "pending";
    var badge = row.querySelector(".badge");
    badge.textContent = state;
    badge.dataset.syncStatus = state;
    var reason = row.querySelector(".sync-reason");
    if (reason) reason.textContent = state === "failed" ? sync.last_error || "" : "";
  }

  function pendingRows() {
    var badges = document.querySelectorAll('tbody[data-id] .badge[data-sync-status="pending"]');
    return Array.prototype.map.call(badges, function (b) { return b.closest("tbody[data-id]"); });
  }

  // Start polling if it is not already running: call it after a change made a row pending.
  function watch() {
    if (pollTimer === null) pollTimer = window.setTimeout(poll, POLL_MS);
  }

  function poll() {
    pollTimer = null;
    var rows = pendingRows().slice(0, 200);
    if (rows.length === 0) {
      refreshSummary();
      return;
    }
    var ids = rows.map(function (r) { return r.dataset.id; }).join(",");
    getJson("/api/sync/statuses?ids=" + ids)
      .then(function (data) {
        if (!data) return;
        data.products.forEach(function (sync) {
          var row = rowWithId(sync.id);
          if (row) setBadge(row, sync);
        });
        data.missing.forEach(function (id) {
          var row = rowWithId(id);
          if (row) setBadge(row, { status: "deleted" });
        });
      })
      .catch(function () { /* a network hiccup: the next tick tries again */ })
      .then(watch);
  }

  // A re-index's progress (docs/reindex.md): "g2 · 5,000/10,000 · 180/s · ETA 28 s"; hidden when none runs.
  function reindexProgress(data) {
    if (data.building_generation === null || data.building_generation === undefined) return "";
    var eta = data.building_eta_seconds === null ? "?" : Number(data.building_eta_seconds).toFixed(0) + " s";
    return "g" + data.building_generation + " · " + data.building_indexed.toLocaleString() + "/" +
      data.building_rows.toLocaleString() + " · " + data.building_rate_per_second + "/s · ETA " + eta;
  }

  // Read the totals now (and again every SUMMARY_MS): call it after a change.
  function refreshSummary() {
    var summary = document.getElementById("sync-summary");
    if (!summary) return;
    window.clearTimeout(summaryTimer);
    getJson("/api/sync/status")
      .then(function (data) {
        if (!data) return;
        summary.querySelectorAll("dd[data-key]").forEach(function (dd) {
          var key = dd.dataset.key;
          var value = data[key];
          var ageKey = dd.dataset.ageKey;
          if (key === "oldest_pending_seconds") value = Number(value).toFixed(1) + " s";
          else if (key === "generation") value = "g" + value;
          else if (key === "building_indexed") value = reindexProgress(data);
          else if (ageKey && value === null) value = data.queue;
          else if (ageKey && data[ageKey] !== null && data[ageKey] !== undefined)
            value = value + " · " + Number(data[ageKey]).toFixed(0) + " s";
          else if (value === null) value = "–";
          dd.textContent = String(value);
        });
        summary.querySelectorAll("[data-show-key]").forEach(function (div) {
          var shown = data[div.dataset.showKey];
          div.hidden = shown === null || shown === undefined;
        });
      })
      .catch(function () { /* keep the last numbers */ })
      .then(function () { summaryTimer = window.setTimeout(refreshSummary, SUMMARY_MS); });
  }

  // On page load: follow the rows already pending, and refresh the totals from now on.
  function start() {
    watch();
    summaryTimer = window.setTimeout(refreshSummary, SUMMARY_MS);
  }

  return { setBadge: setBadge, watch: watch, refreshSummary: refreshSummary, start: start };
})();
