/* postier webmail: the one script (vanilla, no build step; the pages' CSP allows
   scripts from /static only). Everything works without it; it adds:
   - live updates: an EventSource on /events (the store's change feed); on a
     change the folder list and, on a list page, the list are fetched again and
     swapped in (never while the reader has messages selected);
   - keyboard shortcuts: j/k next/previous message, Enter or o open, r reply,
     a reply all, f forward, c compose, # delete, / search, x select. */
(function () {
  "use strict";
  var body = document.body;
  var page = body.dataset.page || "";
  var folder = body.dataset.folder || "";

  function parse(html) {
    return new DOMParser().parseFromString(html, "text/html");
  }

  function swap(id, doc) {
    var fresh = doc.getElementById(id);
    var old = document.getElementById(id);
    if (fresh && old) {
      old.replaceWith(document.importNode(fresh, true));
    }
  }

  function selecting() {
    return document.querySelector("#listing input[type=checkbox]:checked") !== null;
  }

  var pending = null;
  var listChanged = false;

  function refresh() {
    pending = null;
    var current = folder ? "?current=" + encodeURIComponent(folder) : "";
    fetch("/nav" + current, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.text() : ""; })
      .then(function (html) {
        if (!html) return;
        var doc = parse("<div id='folder-list'>" + html + "</div>");
        swap("folder-list", doc);
      });
    if (page === "folder" && listChanged && !selecting()) {
      listChanged = false;
      fetch(location.href, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .then(function (html) {
          if (!html || selecting()) return;
          swap("listing", parse(html));
          remember();
          body.dataset.refreshed = String(Date.now());
        });
    }
  }

  if (body.dataset.live && window.EventSource) {
    var events = new EventSource(body.dataset.live);
    events.addEventListener("change", function (e) {
      var ids = [];
      try { ids = JSON.parse(e.data); } catch (err) { ids = []; }
      if (!ids.length || ids.indexOf(Number(folder)) >= 0) listChanged = true;
      if (pending === null) pending = setTimeout(refresh, 150);
    });
    body.dataset.liveReady = "1";
    window.addEventListener("pagehide", function () { events.close(); });
  }

  /* attachments: say at once when the chosen files are too large */
  var files = document.querySelector("input[type=file][data-max]");
  if (files) {
    files.addEventListener("change", function () {
      var total = 0;
      Array.prototype.forEach.call(files.files, function (f) { total += f.size; });
      var tooBig = total > Number(files.dataset.max);
      files.setCustomValidity(tooBig ? "These files are too large to send together." : "");
      files.reportValidity();
    });
  }

  /* the list's order, for j/k on a message page */
  function remember() {
    if (page !== "folder") return;
    var links = document.querySelectorAll("table.messages td.subject a");
    var urls = Array.prototype.map.call(links, function (a) { return a.getAttribute("href"); });
    try { sessionStorage.setItem("postier.list", JSON.stringify(urls)); } catch (err) { /* private mode */ }
  }
  remember();

  function rows() {
    return Array.prototype.slice.call(document.querySelectorAll("table.messages tbody tr"));
  }

  var cursor = -1;
  function moveCursor(step) {
    var all = rows();
    if (!all.length) return;
    cursor = Math.max(0, Math.min(all.length - 1, cursor + step));
    all.forEach(function (tr, i) { tr.classList.toggle("cursor", i === cursor); });
    var link = all[cursor].querySelector("td.subject a");
    if (link) link.focus();
  }

  function neighbour(step) {
    var urls = [];
    try { urls = JSON.parse(sessionStorage.getItem("postier.list") || "[]"); } catch (err) { urls = []; }
    var i = urls.indexOf(location.pathname);
    if (i >= 0 && urls[i + step]) location.href = urls[i + step];
  }

  function press(key) {
    var el = document.querySelector('[data-key="' + key + '"]');
    if (!el) return false;
    if (el.tagName === "INPUT") el.focus(); else el.click();
    return true;
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || e.defaultPrevented) return;
    var t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    var key = e.key;
    var done = false;
    if (key === "j" || key === "k") {
      var step = key === "j" ? 1 : -1;
      if (page === "folder") moveCursor(step); else if (page === "message") neighbour(step);
      done = true;
    } else if ((key === "o" || key === "Enter") && page === "folder" && cursor >= 0) {
      var link = rows()[cursor] && rows()[cursor].querySelector("td.subject a");
      if (link) { link.click(); done = true; }
    } else if (key === "x" && page === "folder" && cursor >= 0) {
      var box = rows()[cursor].querySelector("input[type=checkbox]");
      if (box) { box.checked = !box.checked; done = true; }
    } else if (key === "/") {
      var search = document.querySelector("input[type=search]");
      if (search) { search.focus(); search.select(); done = true; }
    } else if (key === "#" && page === "folder") {
      if (!selecting() && cursor >= 0) {
        var pick = rows()[cursor].querySelector("input[type=checkbox]");
        if (pick) pick.checked = true;
      }
      done = selecting() && press("#");
    } else if (key === "r" || key === "a" || key === "f" || key === "c" || key === "#") {
      done = press(key);
    }
    if (done) e.preventDefault();
  });
  body.dataset.keys = "1";
})();
