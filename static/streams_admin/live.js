// Live counts: the streams an element lists (data-live-keys) get their length, pending, lag
// and rate refreshed every second over /ws/stats/. Cells say what they show with data-stat.
(function () {
  "use strict";
  let socket = null;

  function set(scope, name, value) {
    scope.querySelectorAll(`[data-stat="${name}"]`).forEach((cell) => {
      const text = value === null || value === undefined ? cell.dataset.none || "–" : String(value);
      if (cell.textContent !== text) { cell.textContent = text; cell.classList.add("changed"); setTimeout(() => cell.classList.remove("changed"), 600); }
    });
  }

  function update(streams) {
    for (const [token, s] of Object.entries(streams)) {
      document.querySelectorAll(`[data-key="${CSS.escape(token)}"]`).forEach((scope) => {
        set(scope, "length", s.length);
        set(scope, "pending", s.pending);
        set(scope, "rate", s.rate === null ? null : s.rate + "/s");
        // A lag Redis cannot give is counted only when the page loads: keep that figure.
        const lags = Object.values(s.groups).map((g) => g.lag);
        if (lags.length && !lags.includes(null)) set(scope, "worst-lag", Math.max(...lags));
        for (const [group, g] of Object.entries(s.groups)) {
          scope.querySelectorAll(`[data-group="${CSS.escape(group)}"]`).forEach((gscope) => {
            set(gscope, "group-pending", g.pending);
            set(gscope, "lag", g.lag !== null && g.lag_at_least ? `≥ ${g.lag}` : g.lag);
            set(gscope, "entries-read", g.entries_read);
            set(gscope, "last-delivered", g.last_delivered_id);
          });
        }
      });
    }
  }

  function connect() {
    if (socket) { socket.onclose = null; socket.close(); socket = null; }
    const holder = document.querySelector("[data-live-keys]");
    if (!holder || !holder.dataset.liveKeys) return;
    const query = new URLSearchParams();
    holder.dataset.liveKeys.split(" ").filter(Boolean).forEach((k) => query.append("key", k));
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/ws/stats/?${query}`);
    socket.onmessage = (event) => { const msg = JSON.parse(event.data); if (msg.type === "stats") update(msg.streams); };
    socket.onclose = () => setTimeout(connect, 3000);
  }

  document.addEventListener("htmx:afterSettle", connect);
  connect();
})();
