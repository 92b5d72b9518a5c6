// paasport dashboard: live refresh from the event stream, the token, actions, search, logs.
// No framework and no build step; the pages are readable without it.
(function () {
  "use strict";
  var body = document.body;
  var live = document.getElementById("live");
  var liveState = document.getElementById("live-state");
  var toast = document.getElementById("toast");
  var TOKEN_KEY = "paasport-api-token";

  function token() { return sessionStorage.getItem(TOKEN_KEY) || ""; }
  function applyToken() { body.classList.toggle("has-token", token() !== ""); }

  var form = document.getElementById("token-form");
  if (form) {
    form.hidden = false;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var input = document.getElementById("token");
      var value = input.value.trim();
      if (value) { sessionStorage.setItem(TOKEN_KEY, value); } else { sessionStorage.removeItem(TOKEN_KEY); }
      input.value = "";
      input.placeholder = value ? "token set (empty + set: forget it)" : "API token for actions";
      applyToken();
    });
  }
  applyToken();

  function say(message, ok) {
    toast.textContent = message;
    toast.className = ok ? "ok" : "bad";
    toast.hidden = false;
    clearTimeout(say.timer);
    say.timer = setTimeout(function () { toast.hidden = true; }, 6000);
  }

  // search: filter rows as you type (the form still works without the script)
  function filter() {
    var q = document.getElementById("q");
    if (!q) { return; }
    var text = q.value.trim().toLowerCase();
    live.querySelectorAll("[data-search]").forEach(function (row) {
      row.hidden = text !== "" && row.getAttribute("data-search").indexOf(text) < 0;
    });
  }
  live.addEventListener("input", function (ev) { if (ev.target.id === "q") { filter(); } });

  // refresh <main> when something happened (debounced; one request at a time)
  var timer = null, busy = false, again = false;
  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    var url = new URL(location.href);
    url.searchParams.set("fragment", "1");
    var q = document.getElementById("q");
    var typed = q ? q.value : null;
    fetch(url, { headers: { Accept: "text/html" }, cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html === null) { return; }
        live.innerHTML = html;
        var q2 = document.getElementById("q");
        if (q2 && typed !== null) { q2.value = typed; filter(); }
        body.setAttribute("data-refreshed", String(Date.now()));
      })
      .catch(function () { /* the next event or the slow refresh tries again */ })
      .finally(function () {
        busy = false;
        if (again) { again = false; schedule(50); }
      });
  }
  function schedule(ms) { clearTimeout(timer); timer = setTimeout(refresh, ms); }

  var stream = body.getAttribute("data-stream");
  if (stream && window.EventSource) {
    var source = new EventSource(stream);
    source.onopen = function () { liveState.textContent = "live"; liveState.className = "ok"; };
    source.onerror = function () { liveState.textContent = "reconnecting"; liveState.className = "warn"; };
    (body.getAttribute("data-kinds") || "").split(",").forEach(function (kind) {
      if (kind) { source.addEventListener(kind, function () { schedule(60); }); }
    });
  }
  setInterval(function () { if (!document.hidden) { schedule(0); } }, 30000);

  // actions: confirm, then POST to the API with the token
  live.addEventListener("click", function (ev) {
    var button = ev.target.closest("button[data-action]");
    if (!button || button.disabled) { return; }
    if (!window.confirm(button.getAttribute("data-confirm"))) { return; }
    button.disabled = true;
    fetch(button.getAttribute("data-url"), {
      method: "POST",
      headers: { Authorization: "Bearer " + token(), "Content-Type": "application/json" },
      body: "{}"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (answer) {
        if (r.ok) {
          say(button.getAttribute("data-action") + ": tagged " + (answer.tag || ""), true);
        } else {
          say((answer.error && answer.error.message) || ("HTTP " + r.status), false);
        }
      });
    }).catch(function (err) { say(String(err), false); })
      .finally(function () { schedule(100); });
  });

  // the log tail: each new line from the log stream (outside <main>, so refreshes keep it)
  var MAX_LINES = 300;
  var pre = document.getElementById("logs");
  if (pre && pre.getAttribute("data-stream") && window.EventSource) {
    var lines = pre.textContent === "no log lines" ? [] : pre.textContent.split("\n");
    var logSource = new EventSource(pre.getAttribute("data-stream"));
    logSource.onopen = function () { pre.setAttribute("data-live", "1"); };
    logSource.onerror = function () { pre.removeAttribute("data-live"); };
    logSource.addEventListener("log", function (ev) {
      var line;
      try { line = JSON.parse(ev.data); } catch (err) { return; }
      var stick = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      lines.push(line.task + " | " + line.message);
      if (lines.length > MAX_LINES) { lines.splice(0, lines.length - MAX_LINES); }
      pre.textContent = lines.join("\n");
      pre.setAttribute("data-lines", String(lines.length));
      if (stick) { pre.scrollTop = pre.scrollHeight; }
    });
  }
})();
