// The product table's behaviour: inline edit, add, delete, and sync badges that update by themselves (sync_status.js).
// Plain JavaScript, no build step. Every change goes through the JSON API with the CSRF token.
(function () {
  "use strict";

  var csrfToken = document.querySelector('meta[name="csrf-token"]').content;

  function api(method, url, body) {
    var headers = { Accept: "application/json", "X-CSRF-Token": csrfToken };
    var init = { method: method, headers: headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      if (response.status === 204) return { status: 204, ok: true, data: null };
      return response.json().then(
        function (data) { return { status: response.status, ok: response.ok, data: data }; },
        function () { return { status: response.status, ok: response.ok, data: null }; }
      );
    });
  }

  function announce(text) {
    document.getElementById("announcer").textContent = text;
  }

  // --- sync badges and header totals (shared with another source's page: sync_status.js) ---

  var setBadge = window.SyncStatus.setBadge;
  var schedulePoll = window.SyncStatus.watch;
  var refreshSummary = window.SyncStatus.refreshSummary;

  // --- dead letters (signed-in editors; docs/web.md) ---------------------------------------

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function deadLetterItem(message) {
    var item = element("li", "dead-letter");
    item.dataset.messageId = message.id;
    var what = message.malformed ? "unreadable message" : "products " + message.products.join(", ");
    item.append(element("span", "dead-letter-what", what + " · received " + message.receive_count + "× · " +
      Math.round(message.age_seconds) + " s old"));
    item.append(element("p", "dead-letter-reason", message.reason));
    var discard = element("button", "danger", "Discard");
    discard.type = "button";
    discard.dataset.dlqAction = "discard";
    discard.dataset.id = message.id;
    item.append(discard);
    return item;
  }

  function loadDeadLetters() {
    var panel = document.getElementById("dead-letters");
    if (!panel || !panel.open) return;
    var body = panel.querySelector(".dead-letters-body");
    api("GET", "/api/dead-letters")
      .then(function (result) {
        body.replaceChildren();
        if (!result.ok) {
          body.append(element("p", "error", (result.data && result.data.error) || "Dead letters unavailable."));
          return;
        }
        result.data.lanes.forEach(function (lane) {
          var section = element("section", "dead-letter-lane");
          section.dataset.lane = lane.lane;
          section.append(element("h2", "", lane.lane + " lane: " + lane.depth + " dead letter(s)"));
          if (lane.depth > 0) {
            var redrive = element("button", "secondary", "Redrive " + lane.lane + " lane");
            redrive.type = "button";
            redrive.dataset.dlqAction = "redrive";
            redrive.dataset.lane = lane.lane;
            section.append(redrive);
          }
          var list = element("ul", "dead-letter-list");
          lane.messages.forEach(function (message) { list.append(deadLetterItem(message)); });
          section.append(list);
          body.append(section);
        });
      })
      .catch(function () { body.replaceChildren(element("p", "error", unreachable().data.error)); });
  }

  function actOnDeadLetters(button) {
    var redrive = button.dataset.dlqAction === "redrive";
    var request = redrive
      ? api("POST", "/api/dead-letters/redrive", { lane: button.dataset.lane })
      : api("POST", "/api/dead-letters/discard", { ids: [button.dataset.id] });
    button.disabled = true;
    request
      .then(function (result) {
        if (!result.ok) {
          announce((result.data && result.data.error) || "The dead letters could not be changed.");
          button.disabled = false;
          return;
        }
        if (redrive) {
          var moved = result.data.lanes.reduce(function (n, lane) { return n + lane.messages; }, 0);
          announce(moved + " dead letter(s) sent back to the queue.");
        } else {
          announce("Discarded; products marked failed: " + (result.data.marked_failed.join(", ") || "none") + ".");
        }
        loadDeadLetters();
        refreshSummary();
      })
      .catch(function () {
        announce(unreachable().data.error);
        button.disabled = false;
      });
  }

  // --- forms -------------------------------------------------------------------------------

  function formValues(form, names) {
    var values = {};
    names.forEach(function (name) { values[name] = form.elements[name].value; });
    return values;
  }

  // Only what this person changed (against the values the form was filled with): a save never
  // writes back a field they did not touch, so it cannot undo someone else's change to it.
  function changedValues(form, names) {
    var values = {};
    names.forEach(function (name) {
      var input = form.elements[name];
      if (input.value !== input.defaultValue) values[name] = input.value;
    });
    return values;
  }

  function clearErrors(form) {
    form.querySelectorAll("[data-error-for]").forEach(function (slot) { slot.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (input) { input.removeAttribute("aria-invalid"); });
    form.querySelector(".form-message").textContent = "";
  }

  function showErrors(form, result, fallback) {
    var data = result.data || {};
    var fields = data.fields || {};
    var first = null;
    Object.keys(fields).forEach(function (name) {
      var input = form.elements[name];
      var slot = form.querySelector('[data-error-for="' + name + '"]');
      var label = input && form.querySelector('label[for="' + input.id + '"]');
      if (slot) slot.textContent = (label ? label.textContent + " " : "") + fields[name];
      if (input) {
        input.setAttribute("aria-invalid", "true");
        first = first || input;
      }
    });
    var message = data.error || fallback;
    if (result.status === 401) message = "Sign in to edit (the link is at the top of the page).";
    if (result.status === 403) message = "Your session has expired: reload the page and try again.";
    form.querySelector(".form-message").textContent = message;
    if (first) first.focus();
  }

  function setBusy(form, busy) {
    form.querySelectorAll("button").forEach(function (button) { button.disabled = busy; });
  }

  function unreachable() {
    return { status: 0, data: { error: "Could not reach the server; check your connection and try again." } };
  }

  // --- rows --------------------------------------------------------------------------------

  // Show a saved product in its row, and make it the editor's reset state.
  function fillRow(row, product) {
    row.dataset.version = product.version;
    row.querySelector(".name").textContent = product.name;
    row.querySelector(".sku").textContent = product.sku;
    row.querySelector(".description").textContent = product.description;
    row.querySelector(".category").textContent = product.category;
    row.querySelector(".price").textContent = product.price;
    var form = row.querySelector("form.product-editor");
    if (form) {
      ["name", "category", "price", "description"].forEach(function (name) {
        form.elements[name].value = product[name];
        form.elements[name].defaultValue = product[name];
      });
    }
    setBadge(row, product.sync);
  }

  function openEditor(row, button) {
    var editor = row.querySelector(".editor-row");
    editor.hidden = false;
    button.setAttribute("aria-expanded", "true");
    editor.querySelector("input, textarea").focus();
  }

  function closeEditor(row) {
    var editor = row.querySelector(".editor-row");
    var form = editor.querySelector("form");
    form.reset();
    clearErrors(form);
    editor.hidden = true;
    var button = row.querySelector('[data-action="edit"]');
    button.setAttribute("aria-expanded", "false");
    button.focus();
  }

  function saveProduct(form) {
    var row = form.closest("tbody.product");
    var body = changedValues(form, ["name", "category", "price", "description"]);
    if (Object.keys(body).length === 0) {
      closeEditor(row);
      announce("Nothing changed.");
      return Promise.resolve();
    }
    body.version = Number(row.dataset.version);
    clearErrors(form);
    setBusy(form, true);
    return api("PUT", "/api/products/" + row.dataset.id, body)
      .catch(unreachable)
      .then(function (result) {
        setBusy(form, false);
        if (result.ok) {
          fillRow(row, result.data);
          closeEditor(row);
          announce("Saved " + result.data.name + "; it becomes searchable once indexed.");
          schedulePoll();
          refreshSummary();
          return;
        }
        if (result.status === 409 && result.data && result.data.current) {
          // Someone else saved first: show their version in the row and the form, keep only the
          // fields this person changed, and let a second Save apply those on top of it deliberately.
          var mine = changedValues(form, ["name", "category", "price", "description"]);
          fillRow(row, result.data.current);
          Object.keys(mine).forEach(function (name) { form.elements[name].value = mine[name]; });
        }
        showErrors(form, result, "Saving failed.");
      });
  }

  function deleteProduct(row) {
    var name = row.querySelector(".name").textContent;
    var message = row.querySelector(".row-message");
    if (!window.confirm("Delete \u201c" + name + "\u201d? This cannot be undone.")) return Promise.resolve();
    message.textContent = "";
    return api("DELETE", "/api/products/" + row.dataset.id + "?version=" + row.dataset.version)
      .catch(unreachable)
      .then(function (result) {
        if (result.ok || result.status === 404) {
          row.remove();
          announce("Deleted " + name + ".");
          refreshSummary();
          return;
        }
        message.textContent = (result.data && result.data.error) || "Deleting failed.";
      });
  }

  function addProduct(form) {
    var body = formValues(form, ["sku", "name", "category", "price", "description"]);
    var table = document.getElementById("results");
    clearErrors(form);
    setBusy(form, true);
    return api("POST", "/api/products", body)
      .catch(unreachable)
      .then(function (result) {
        setBusy(form, false);
        if (result.status !== 201) {
          showErrors(form, result, "Adding failed.");
          return;
        }
        var product = result.data;
        form.reset();
        form.querySelector(".form-message").textContent =
          "Added " + product.name + " (#" + product.id + "); it becomes searchable once indexed.";
        schedulePoll();
        refreshSummary();
        if (!table) return;
        var url = "/products/" + product.id + "/row?score_column=" + table.dataset.scoreColumn;
        return fetch(url, { credentials: "same-origin" })
          .then(function (response) { return response.ok ? response.text() : ""; })
          .then(function (html) {
            if (!html) return;
            var template = document.createElement("template");
            template.innerHTML = html.trim();
            var empty = table.querySelector("tbody.empty");
            if (empty) empty.remove();
            table.insertBefore(template.content.firstElementChild, table.tBodies[0] || null);
            schedulePoll();
          });
      });
  }

  // --- wiring ------------------------------------------------------------------------------

  document.addEventListener("click", function (event) {
    var dlqButton = event.target.closest("button[data-dlq-action]");
    if (dlqButton) actOnDeadLetters(dlqButton);
    var button = event.target.closest("button[data-action]");
    if (!button) return;
    var row = button.closest("tbody.product");
    if (button.dataset.action === "edit") openEditor(row, button);
    else if (button.dataset.action === "cancel") closeEditor(row);
    else if (button.dataset.action === "delete") deleteProduct(row);
  });

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form.matches("form.product-editor")) {
      event.preventDefault();
      saveProduct(form);
    } else if (form.id === "add-product") {
      event.preventDefault();
      addProduct(form);
    }
  });

  var deadLetters = document.getElementById("dead-letters");
  if (deadLetters) deadLetters.addEventListener("toggle", loadDeadLetters);

  window.SyncStatus.start();
})();
