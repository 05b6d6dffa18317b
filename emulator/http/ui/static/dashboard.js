// The dashboard's only script (no library, nothing fetched from elsewhere). Pages work
// without it; with it, each page polls one small JSON answer (data-live on <body>) about
// once a second while it is visible, and forms with data-confirm ask first.
"use strict";

(function () {
  const body = document.body;
  const live = body.dataset.live;
  const prefix = "/_emulator/ui";

  function text(tag, content, className) {
    const node = document.createElement(tag);
    if (content !== undefined) node.textContent = String(content);
    if (className) node.className = className;
    return node;
  }

  function setClock(clock) {
    const now = document.getElementById("clock-now");
    if (now && clock) now.textContent = clock.text;
  }

  function taskRow(row) {
    const tr = document.createElement("tr");
    tr.dataset.task = row.id;
    const idCell = document.createElement("td");
    const link = text("a", row.id, "id");
    link.href = prefix + "/tasks/" + encodeURIComponent(row.id);
    idCell.appendChild(link);
    tr.appendChild(idCell);
    const owner = document.createElement("td");
    const code = text("code", row.owner);
    code.title = "fingerprint of the API key";
    owner.appendChild(code);
    tr.appendChild(owner);
    tr.appendChild(text("td", row.model));
    tr.appendChild(text("td", row.size));
    tr.appendChild(text("td", row.n, "num"));
    const status = document.createElement("td");
    status.appendChild(text("span", row.status, "status " + row.status));
    tr.appendChild(status);
    const progress = document.createElement("td");
    const bar = text("progress", row.progress + "%");
    bar.max = 100;
    bar.value = row.progress;
    bar.setAttribute("aria-label", "progress of " + row.id);
    progress.appendChild(bar);
    progress.appendChild(document.createTextNode(" "));
    progress.appendChild(text("span", row.progress + "%", "pct"));
    tr.appendChild(progress);
    tr.appendChild(text("td", row.age, "num"));
    return tr;
  }

  function caption(data) {
    const n = data.rows.length;
    let words = n ? n + " newest matching task" + (n === 1 ? "" : "s") : "No matching task";
    words += " · " + data.stored + " stored";
    if (!data.complete) words += " · looked at the newest " + data.scanned + " only";
    return words + " · updates every second";
  }

  // Cells of a row the refresh may change, in order: status, progress, age.
  function refreshRow(tr, row) {
    const badge = tr.querySelector(".status");
    if (badge.textContent !== row.status) {
      badge.textContent = row.status;
      badge.className = "status " + row.status;
    }
    const bar = tr.querySelector("progress");
    if (bar.value !== row.progress) {
      bar.value = row.progress;
      bar.textContent = row.progress + "%";
      tr.querySelector(".pct").textContent = row.progress + "%";
    }
    const age = tr.lastElementChild;
    if (age.textContent !== row.age) age.textContent = row.age;
  }

  let lastTable = "";
  const updaters = {
    tasks(data) {
      const rows = document.getElementById("task-rows");
      if (!rows) return;
      // Cheap for the browser too: the same tasks in the same order change only the cells
      // that moved; only a new or vanished task rebuilds the rows.
      const ids = data.rows.map(function (row) { return row.id; }).join(" ");
      const shown = Array.from(rows.children, function (tr) { return tr.dataset.task; }).join(" ");
      if (ids === shown) {
        data.rows.forEach(function (row, i) { refreshRow(rows.children[i], row); });
      } else {
        rows.replaceChildren(...data.rows.map(taskRow));
      }
      const words = caption(data);
      if (words !== lastTable) {
        lastTable = words;
        const cap = document.getElementById("tasks-caption");
        if (cap) cap.textContent = words;
      }
    },
    task(data) {
      const section = document.getElementById("task-live");
      if (!section) return;
      if (data.status !== section.dataset.status) {
        window.location.reload(); // a new status brings results, history, steering
        return;
      }
      const bar = document.getElementById("task-progress");
      if (bar) bar.value = data.progress;
      const pct = document.getElementById("task-pct");
      if (pct) pct.textContent = data.progress + "%";
    },
    faults(data) {
      for (const rule of data.faults) {
        for (const cell of document.querySelectorAll("[data-hits-for]")) {
          if (cell.dataset.hitsFor === rule.id) cell.textContent = String(rule.hits);
        }
      }
    },
    clock() {},
  };

  function kindOf(url) {
    const path = url.split("?")[0];
    if (path.endsWith("/live/tasks")) return "tasks";
    if (path.indexOf("/live/tasks/") >= 0) return "task";
    if (path.endsWith("/live/faults")) return "faults";
    return "clock";
  }

  // One request at a time; the next one a second after the last answer, or longer when
  // answers are slow (ten times the last answer's time), and none while the page is hidden.
  let timer = null;
  let busy = false;
  async function poll() {
    timer = null;
    if (document.hidden) return;
    busy = true;
    const began = performance.now();
    try {
      const answer = await fetch(live, { credentials: "same-origin", cache: "no-store" });
      if (answer.ok) {
        const data = await answer.json();
        setClock(data.clock);
        updaters[kindOf(live)](data);
      }
    } catch (error) {
      // The emulator restarted or is away: try again at the next tick.
    }
    busy = false;
    const spent = performance.now() - began;
    timer = setTimeout(poll, Math.max(1000, spent * 10));
  }
  if (live) {
    timer = setTimeout(poll, 1000);
    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null && !busy) poll();
    });
  }

  // Forms that forget things ask first.
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // The fault form shows the fields the chosen kind uses (all of them without script).
  const kind = document.getElementById("f-kind");
  function showFields() {
    for (const field of document.querySelectorAll("[data-kinds]")) {
      const used = field.dataset.kinds.split(" ").indexOf(kind.value) >= 0;
      field.hidden = !used;
      // Disabled: not sent, so a hidden field's old text never reaches the server (which
      // refuses a field the kind does not use).
      for (const input of field.querySelectorAll("input, select, textarea")) {
        input.disabled = !used;
      }
    }
  }
  if (kind) {
    kind.addEventListener("change", showFields);
    showFields();
  }

  // Filters apply as soon as they change.
  for (const select of document.querySelectorAll(".filters select")) {
    select.addEventListener("change", function () { select.form.submit(); });
  }
})();
