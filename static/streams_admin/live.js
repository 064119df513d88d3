// Live counts: the streams an element lists (data-live-keys) get their length, pending, lag
// and rate refreshed over /ws/stats/. Cells say what they show with data-stat. The server
// sends every stream first, then only the ones that changed, and says when it lost Redis;
// [data-live-state] shows that truthfully ("live" / "reconnecting…").
(function () {
  "use strict";
  if (window.streamsAdminLive) return; // htmx runs a swapped-in page's scripts again
  window.streamsAdminLive = true;
  let socket = null;
  let retry = 1000; // ms before reopening a closed socket; doubles up to 30 s
  let state = ["connecting…", "", ""]; // text, badge kind, reason

  function show(text, kind, reason) {
    state = [text, kind, reason || ""];
    document.querySelectorAll("[data-live-state]").forEach((badge) => {
      badge.textContent = text;
      badge.className = kind ? `badge ${kind}` : "badge";
      badge.title = reason || "live counts";
    });
  }

  function set(scope, name, value) {
    scope.querySelectorAll(`[data-stat="${name}"]`).forEach((cell) => {
      const text = value === null || value === undefined ? cell.dataset.none || "–" : String(value);
      if (cell.textContent !== text) {
        cell.textContent = text;
        cell.classList.add("changed");
        setTimeout(() => cell.classList.remove("changed"), 600);
      }
    });
  }

  function lagText(g) {
    return g.lag !== null && g.lag_at_least ? `≥ ${g.lag}` : g.lag;
  }

  function update(streams) {
    for (const [token, found] of Object.entries(streams)) {
      // null: the stream does not exist (any more); its figures go blank.
      const s = found || { length: null, pending: null, rate: null, groups: {} };
      document.querySelectorAll(`[data-key="${CSS.escape(token)}"]`).forEach((scope) => {
        set(scope, "length", s.length);
        set(scope, "pending", s.pending);
        set(scope, "rate", s.rate === null ? null : s.rate + "/s");
        const known = Object.values(s.groups).filter((g) => g.lag !== null);
        const worst = known.reduce((a, g) => (a === null || g.lag > a.lag ? g : a), null);
        set(scope, "worst-lag", worst === null ? null : lagText(worst));
        for (const [group, g] of Object.entries(s.groups)) {
          scope.querySelectorAll(`[data-group="${CSS.escape(group)}"]`).forEach((gscope) => {
            set(gscope, "group-pending", g.pending);
            set(gscope, "lag", lagText(g));
            set(gscope, "entries-read", g.entries_read);
            set(gscope, "last-delivered", g.last_delivered_id);
          });
        }
      });
    }
  }

  function receive(event) {
    const msg = JSON.parse(event.data);
    // charts.js extends its charts with these (a "stats" or "state" message, as sent)
    document.dispatchEvent(new CustomEvent("streams-admin:live", { detail: msg }));
    if (msg.type === "stats") {
      retry = 1000;
      show("live", "ok");
      update(msg.streams);
    } else if (msg.type === "state") {
      if (msg.state === "live") show("live", "ok");
      else show("reconnecting…", "warn", msg.reason);
    }
  }

  function connect() {
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    const holder = document.querySelector("[data-live-keys]");
    if (!holder || !holder.dataset.liveKeys.trim()) return;
    show(...state); // a swapped-in badge shows what is known
    const query = new URLSearchParams();
    holder.dataset.liveKeys.split(" ").filter(Boolean).forEach((k) => query.append("key", k));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${document.body.dataset.prefix || "/"}ws/stats/?${query}`);
    socket.onmessage = receive;
    socket.onclose = () => {
      show("reconnecting…", "warn", "The connection to the dashboard closed.");
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 30000);
    };
  }

  document.addEventListener("htmx:afterSettle", connect);
  connect();
})();
