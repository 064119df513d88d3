// Live tail: rows arrive over a websocket, newest on top; pause keeps counting, reconnect
// resumes where the page was (one stream: after the last ID; a firehose: each stream after
// its own position) so nothing is missed or shown twice. The badge says what is true: live
// only while the server reads every stream, else reconnecting or the error, with the reason.
(function () {
  "use strict";
  const table = document.getElementById("tail");
  if (!table) return;
  const body = document.getElementById("tail-rows");
  const maxRows = parseInt(table.dataset.maxRows, 10) || 500;
  const state = document.getElementById("tail-state");
  const pauseButton = document.getElementById("tail-pause");
  const pausedBadge = document.getElementById("tail-paused");
  const count = document.getElementById("tail-count");
  const rate = document.getElementById("tail-rate");
  const empty = document.getElementById("tail-empty");
  const reason = document.getElementById("tail-reason");
  const FIRST_RETRY = 1000, MAX_RETRY = 15000;  // ms between reconnections: doubles up to max
  const SILENT = 35000;  // ms without a message (the server pings every 10 s): a dead socket
  const PERMANENT = [4003, 4400];  // not allowed, bad parameters: retrying cannot help
  let lastId = null, paused = false, held = [], heldCount = 0, retry = FIRST_RETRY, socket = null;
  let failed = false, heard = Date.now();
  let positions = null;  // a firehose: stream token -> the ID it was read up to
  const arrivals = [];  // [time, entries read] over the last 5 s

  // Entry IDs compared as Redis does ("ms-seq", each part a 64-bit number kept as text).
  function compareIds(a, b) {
    const [am, as] = a.split("-"), [bm, bs] = b.split("-");
    const text = (x, y) => x.length - y.length || (x < y ? -1 : x > y ? 1 : 0);
    return text(am, bm) || text(as, bs);
  }

  function addRows(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const rows = Array.from(template.content.children);  // newest first
    const top = body.rows[0];
    if (!rows.length || !top || !top.dataset.id || !rows[rows.length - 1].dataset.id
        || compareIds(rows[rows.length - 1].dataset.id, top.dataset.id) > 0) {
      body.prepend(template.content);  // all newer than what is shown: the usual case
    } else {
      // A firehose: another stream's frame may hold entries older than rows already shown.
      // Each goes where its ID belongs, above any "skipped" marker.
      for (const row of rows.reverse()) {
        let at = body.rows[0];
        while (at && at.dataset.id && compareIds(at.dataset.id, row.dataset.id) > 0) at = at.nextElementSibling;
        body.insertBefore(row, at);
      }
    }
    while (body.rows.length > maxRows) body.deleteRow(body.rows.length - 1);
    counted();
  }

  function counted() {
    count.textContent = body.rows.length;
    empty.hidden = body.rows.length > 0;
  }

  function marker(text) {
    const cols = table.tHead.rows[0].cells.length;
    addRows(`<tr class="marker"><td colspan="${cols}" class="muted small"></td></tr>`);
    body.rows[0].cells[0].textContent = text;
  }

  function show(rows) {
    // rows come oldest first; newest goes on top
    if (rows.length) addRows(rows.slice().reverse().join(""));
  }

  function setState(text, kind, why) {
    state.textContent = text;
    state.className = kind ? `badge ${kind}` : "badge";
    reason.textContent = why || "";
    reason.hidden = !why;
  }

  function onMessage(event) {
    heard = Date.now();
    const msg = JSON.parse(event.data);
    if (msg.type === "live") {
      setState("live", "ok"); retry = FIRST_RETRY; failed = false;
      if (msg.positions) positions = Object.assign(positions || {}, msg.positions);
      if (msg.last_id) lastId = msg.last_id;  // where this page's rows begin: resume after it
    } else if (msg.type === "reconnecting") {
      setState("reconnecting…", "warn", msg.reason);
    } else if (msg.type === "entries") {
      socket.send(JSON.stringify({ack: msg.seq}));
      lastId = msg.last_id;
      if (msg.positions) Object.assign(positions, msg.positions);
      arrivals.push([Date.now(), msg.read]);
      if (paused) {
        held.push(...msg.rows);
        heldCount += msg.rows.length;
        if (held.length > maxRows) held = held.slice(-maxRows);
        pausedBadge.textContent = `${heldCount} new while paused`;
      } else {
        show(msg.rows);
      }
    } else if (msg.type === "skipped") {
      marker(`… skipped ${msg.count} entries: this page could not keep up`);
    } else if (msg.type === "error" && msg.stream) {
      marker(`${msg.stream}: ${msg.message} It is no longer followed.`);
    } else if (msg.type === "error") {
      setState("error", "bad", msg.message); failed = true;
    }
  }

  function connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const params = new URLSearchParams(table.dataset.wsQuery);
    const resume = positions;
    if (resume || lastId) params.delete("from");
    if (resume) params.set("resume", "1");
    else if (lastId) params.set("after", lastId);
    socket = new WebSocket(`${scheme}://${location.host}${document.body.dataset.prefix || "/"}ws/tail/?${params}`);
    // "live" comes from the server once it reads every stream: entries added from then on show.
    heard = Date.now();
    socket.onopen = () => {
      if (!failed) setState("connecting…", "");
      if (resume) socket.send(JSON.stringify({resume}));
    };
    socket.onmessage = onMessage;
    socket.onclose = (event) => {
      socket = null;
      if (PERMANENT.includes(event.code)) {
        if (!failed) setState("closed", "bad", "The server refused this tail.");
        return;
      }
      const seconds = Math.round(retry / 1000);
      if (failed) {  // keep the error in sight, and say that it is being retried
        const why = reason.textContent.replace(/ \(retrying.*\)$/, "");
        reason.textContent = `${why} (retrying in ${seconds} s)`;
      } else {
        setState("reconnecting…", "warn", `The connection was lost; retrying in ${seconds} s.`);
      }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, MAX_RETRY);
    };
  }

  pauseButton.addEventListener("click", () => {
    paused = !paused;
    pauseButton.textContent = paused ? "Resume" : "Pause";
    pausedBadge.hidden = !paused;
    pausedBadge.textContent = "0 new while paused";
    if (!paused) { show(held); held = []; heldCount = 0; }
  });
  document.getElementById("tail-clear").addEventListener("click", () => {
    body.replaceChildren(); held = []; heldCount = 0; counted();
  });
  setInterval(() => {
    const now = Date.now();
    while (arrivals.length && arrivals[0][0] < now - 5000) arrivals.shift();
    const n = arrivals.reduce((sum, a) => sum + a[1], 0);
    rate.textContent = (n / 5).toFixed(1);
    if (socket && socket.readyState === WebSocket.OPEN && now - heard > SILENT) socket.close();
  }, 1000);
  connect();
})();
