// The page of a source other than products (web/templates/rows.html): add, edit and delete rows through
// /api/<source name>. The form fields are the definition's editable columns; each input says its type.
// An edited row is updated in place and its badge goes pending -> indexed live (sync_status.js, shared
// with the products page); an added row appears with a reload, and the page then follows it the same way.
(function () {
  "use strict";
  var csrfToken = document.querySelector('meta[name="csrf-token"]').content;
  var sync = window.SyncStatus;

  function api(method, url, body) {
    var init = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrfToken } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      if (response.status === 204) return { ok: true, data: null };
      return response.json().then(function (data) { return { ok: response.ok, status: response.status, data: data }; });
    });
  }

  function values(form, onlyChanged) {
    var body = {};
    form.querySelectorAll("[data-type]").forEach(function (input) {
      var value;
      if (input.dataset.type === "boolean") value = input.checked;
      else if (input.dataset.type === "integer") value = input.value === "" ? null : Number(input.value);
      else value = input.value;
      var before = input.dataset.type === "boolean" ? input.defaultChecked : input.defaultValue;
      if (onlyChanged && value === before) return;
      if (!onlyChanged && (value === "" || value === null)) return;
      body[input.name] = value;
    });
    return body;
  }

  function showErrors(form, result) {
    form.querySelectorAll(".field-error").forEach(function (slot) { slot.textContent = ""; });
    var fields = (result.data && result.data.fields) || {};
    Object.keys(fields).forEach(function (name) {
      var slot = form.querySelector('[data-error-for="' + name + '"]');
      if (slot) slot.textContent = fields[name];
    });
    form.querySelector(".form-message").textContent = (result.data && result.data.error) || "Saved.";
  }

  // A value as the table shows it (rows.html's cell macro): true/false, at most 300 characters.
  function shown(value) {
    return value === null || value === undefined ? "" : String(value).slice(0, 300);
  }

  // Show a saved row (the API's answer) in the table, and make its values the edit form's reset state,
  // so that the next Save sends only what changes after this one.
  function fillRow(row, saved) {
    row.dataset.version = saved.version;
    Object.keys(saved).forEach(function (name) {
      var cell = row.querySelector("td.cell-" + CSS.escape(name));
      if (cell) cell.textContent = shown(saved[name]);
    });
    document.getElementById("editor-" + row.dataset.id).querySelectorAll("[data-type]").forEach(function (input) {
      var value = saved[input.name];
      if (input.dataset.type === "boolean") {
        input.defaultChecked = input.checked = Boolean(value);
      } else {
        input.defaultValue = value === null || value === undefined ? "" : String(value);
        input.value = input.defaultValue;
      }
    });
    sync.setBadge(row, saved.sync);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.id === "add-row") {
      event.preventDefault();
      api("POST", form.dataset.api, values(form, false)).then(function (result) {
        if (result.ok) window.location.reload();
        else showErrors(form, result);
      });
    } else if (form.classList.contains("row-editor")) {
      event.preventDefault();
      var row = form.closest("tbody");
      var body = values(form, true);
      body.version = Number(row.dataset.version);
      api("PUT", row.dataset.api, body).then(function (result) {
        showErrors(form, result);
        if (!result.ok) return;
        fillRow(row, result.data);
        document.getElementById("editor-" + row.dataset.id).hidden = true;
        document.getElementById("announcer").textContent = "Saved; it becomes searchable once indexed.";
        sync.watch(); // its badge says pending until Emu has indexed it
        sync.refreshSummary();
      });
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var row = button.closest("tbody");
    if (button.dataset.action === "edit") {
      var editor = document.getElementById("editor-" + row.dataset.id);
      editor.hidden = !editor.hidden;
    } else if (button.dataset.action === "delete") {
      api("DELETE", row.dataset.api + "?version=" + row.dataset.version).then(function (result) {
        if (!result.ok) {
          row.querySelector(".row-message").textContent = result.data.error;
          return;
        }
        row.remove();
        sync.refreshSummary();
      });
    }
  });

  sync.start();
})();
