// History charts (uPlot, vendored in static/vendor/uplot): a section [data-charts] names its
// JSON (data-url; the page's range embedded in script[data-chart-data]) and its charts
// (figure[data-chart]: the series drawn, data-unit); the range links ([data-range-link]) work
// without JavaScript (a reload with ?range=), here they fetch.
// Overview sparklines: every td[data-spark] of the page in one request (th[data-spark-url]).
// A missing sample is null and drawn as a gap (spanGaps false), never as a zero. The 15 m and
// 1 h ranges extend live from the stats socket: live.js dispatches "streams-admin:live".
(function () {
  "use strict";
  if (window.streamsAdminCharts) return; // htmx runs a swapped-in page's scripts again

  const RANGES = { "15m": 900, "1h": 3600, "6h": 21600, "24h": 86400, "7d": 604800 };
  const LIVE = new Set(["15m", "1h"]);
  const HEIGHT = 170;
  const NARROW_HEIGHT = 140;
  const SPARK_HEIGHT = 22;
  const URL_BYTES = 6000;
  const WORST = "worst in each point's span";
  const sections = new Set(); // { el, range, data, charts, stream, group, lastRead }
  const sparks = new Set(); // { el, token, data, plots }
  const resizer = new ResizeObserver((entries) => entries.forEach((e) => fit(e.target)));

  // --- formatting ---------------------------------------------------------------------------
  const grouped = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  function seconds(v) {
    if (v === 0) return "0";
    if (v < 1) return `${Math.round(v * 1000)} ms`;
    if (v < 60) return `${v.toFixed(v < 10 ? 1 : 0)} s`;
    const parts = [[86400, "d"], [3600, "h"], [60, "m"], [1, "s"]];
    const out = [];
    let rest = Math.round(v);
    for (const [size, unit] of parts) {
      if (rest >= size && out.length < 2) { out.push(`${Math.floor(rest / size)}${unit}`); rest %= size; }
    }
    return out.join(" ");
  }
  function compact(v) {
    const a = Math.abs(v);
    if (a >= 1e9) return `${+(v / 1e9).toFixed(1)}G`;
    if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
    if (a >= 1e4) return `${+(v / 1e3).toFixed(1)}k`;
    return a < 10 && v % 1 ? (+v.toFixed(2)).toString() : grouped.format(v);
  }
  function value(unit, v) {
    if (v === null || v === undefined) return "–";
    if (unit === "s") return seconds(v);
    if (unit === "/s") return `${v < 10 ? (+v.toFixed(2)) : grouped.format(v)}/s`;
    return grouped.format(v);
  }
  function tick(unit, v) {
    return unit === "s" ? seconds(v) : unit === "/s" ? `${compact(v)}/s` : compact(v);
  }

  // --- colours: the page's own (app.css, light or dark) --------------------------------------
  function css(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }
  function colours() {
    return { text: css("--muted"), line: css("--line"), main: css("--accent"), worst: css("--warn"),
      many: [css("--accent"), css("--warn"), css("--ok"), css("--bad"), "#a371f7", "#2fb5c0",
        "#db61a2", "#8b949e", "#c59a1a", "#5a7fd6"] };
  }
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1e3), "Etc/UTC"); }
  function when(ts) {
    return ts === null ? "–" : new Date(ts * 1e3).toISOString().slice(0, 19).replace("T", " ") + " UTC";
  }

  // --- one chart ----------------------------------------------------------------------------
  function height() { return window.innerWidth < 640 ? NARROW_HEIGHT : HEIGHT; }

  // Time ticks in UTC, as every time on the pages: hours and minutes up to a day and a half,
  // else the day (the legend gives the whole time of the point under the cursor).
  function timeTicks(u, ticks) {
    const span = u.scales.x.max - u.scales.x.min;
    return ticks.map((ts) => {
      const iso = new Date(ts * 1e3).toISOString();
      return span <= 129600 ? iso.slice(11, 16) : iso.slice(5, 10);
    });
  }

  // Wide enough for its longest label ("150 ms", "12.5k/s"): measured, as uPlot's demos do.
  function axisSize(u, values, index, cycle) {
    const axis = u.axes[index];
    if (cycle > 1) return axis._size;
    const longest = (values || []).reduce((a, v) => (v.length > a.length ? v : a), "");
    u.ctx.font = axis.font[0];
    return Math.ceil(axis.ticks.size + axis.gap + u.ctx.measureText(longest).width / devicePixelRatio) + 2;
  }

  function options(width, unit, series) {
    const c = colours();
    const axis = { stroke: c.text, grid: { stroke: c.line, width: 1 }, ticks: { stroke: c.line, width: 1 } };
    return {
      width, height: height(), tzDate: utc,
      cursor: { drag: { x: true, y: false } },
      legend: { live: true },
      scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      series: [{ label: "UTC", value: (u, ts) => when(ts) }, ...series.map((s, i) => ({
        label: s.label, spanGaps: false, width: s.worst ? 1 : 1.5,
        stroke: s.worst ? c.worst : series.length > 2 ? c.many[i % c.many.length] : c.main,
        dash: s.worst ? [4, 3] : undefined, value: (u, v) => value(unit, v),
      }))],
      axes: [{ ...axis, space: 70, values: timeTicks },
        { ...axis, size: axisSize, values: (u, ticks) => ticks.map((v) => tick(unit, v)) }],
    };
  }

  function chartSeries(figure, data) {
    const wanted = figure.dataset.chart.split(" ");
    if (wanted[0] === "consumers") {
      const c = data.consumers || { names: [], pending: [] };
      return c.names.map((name, i) => ({ label: name, values: c.pending[i] }));
    }
    const main = data.series[wanted[0]] || [];
    const out = [{ name: wanted[0], label: figure.querySelector("figcaption").firstChild.textContent.trim(), values: main }];
    const worst = wanted[1] && data.series[wanted[1]];
    // the worst within a point's span differs from its last value only on long ranges
    if (worst && worst.some((v, i) => v !== main[i])) out.push({ name: wanted[1], label: WORST, values: worst, worst: true });
    return out;
  }

  function draw(section, figure) {
    const box = figure.querySelector(".plot");
    const old = section.charts.get(figure);
    if (old) { old.plot.destroy(); resizer.unobserve(box); }
    const series = chartSeries(figure, section.data);
    const data = [section.data.times.slice(), ...series.map((s) => s.values.slice())];
    const unit = figure.dataset.unit;
    const plot = new uPlot(options(box.clientWidth || 300, unit, series), data, box);
    section.charts.set(figure, { plot, data, series });
    figure.dataset.points = data[0].length;
    resizer.observe(box);
    const left = figure.querySelector("[data-left-out]");
    if (left && section.data.consumers) {
      const n = section.data.consumers.left_out;
      left.textContent = series.length === 0 ? "no consumer has a history yet"
        : n ? `${series.length} shown, ${n} more not drawn` : "";
    }
  }

  function fit(box) {
    for (const section of sections) {
      for (const chart of section.charts.values()) {
        if (chart.plot.root.parentNode === box) chart.plot.setSize({ width: box.clientWidth, height: height() });
      }
    }
    for (const spark of sparks) {
      for (const p of spark.plots) if (p.root.parentNode === box) p.setSize({ width: box.clientWidth, height: SPARK_HEIGHT });
    }
  }

  // --- a section: fetch its range, draw its charts -------------------------------------------
  function empty(data) {
    const all = [...Object.values(data.series || {}), ...((data.consumers || {}).pending || [])];
    return all.every((values) => values.every((v) => v === null));
  }

  async function load(section, range) {
    const status = section.el.querySelector("[data-chart-status]");
    status.textContent = "loading…";
    let data;
    try {
      const response = await fetch(`${section.el.dataset.url}?range=${encodeURIComponent(range)}`,
        { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      data = await response.json();
    } catch (error) {
      status.textContent = `The history could not be read (${error.message}); the page's figures are the present.`;
      return;
    }
    status.textContent = "";
    show(section, range, data);
  }

  function show(section, range, data) {
    section.range = range;
    section.data = data;
    section.lastRead = null;
    section.el.querySelector("[data-chart-empty]").hidden = !empty(data);
    section.el.querySelectorAll("figure[data-chart]").forEach((figure) => draw(section, figure));
    section.el.querySelectorAll("[data-range-link]").forEach((a) => {
      if (a.dataset.rangeLink === range) a.setAttribute("aria-current", "true");
      else a.removeAttribute("aria-current");
    });
  }

  function choose(section, event) {
    const link = event.target.closest("[data-range-link]");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey) return;
    event.preventDefault();
    const url = new URL(location.href);
    url.searchParams.set("range", link.dataset.rangeLink);
    history.replaceState(history.state, "", url);
    load(section, link.dataset.rangeLink);
  }

  function start(el) {
    el.dataset.drawn = "1";
    const range = new URL(location.href).searchParams.get("range");
    const section = { el, charts: new Map(), data: null, range: null, lastRead: null,
      stream: el.dataset.stream, group: el.dataset.groupToken };
    sections.add(section);
    el.addEventListener("click", (event) => choose(section, event));
    const chosen = range in RANGES ? range : "1h";
    // The page's range comes with the page (no second request); another is fetched.
    const embedded = el.querySelector("script[data-chart-data]");
    if (embedded && embedded.dataset.chartData === chosen) show(section, chosen, JSON.parse(embedded.textContent));
    else load(section, chosen);
  }

  // --- live points (15 m, 1 h): what the stats socket says of this stream / group ------------
  function liveValues(section, streams, now) {
    if (!(section.stream in streams)) return null; // unchanged: nothing new to draw
    const s = streams[section.stream];
    if (!section.group) return s ? { length: s.length, in_rate: s.rate } : { length: null, in_rate: null };
    const g = s && s.groups[section.group];
    if (!g) return { lag: null, worst_lag: null, pending: null, out_rate: null };
    let rate = null;
    const last = section.lastRead;
    if (last && g.entries_read !== null && last.read !== null && g.entries_read >= last.read && now > last.t) {
      rate = (g.entries_read - last.read) / (now - last.t);
    }
    section.lastRead = { t: now, read: g.entries_read };
    return { lag: g.lag, worst_lag: g.lag, pending: g.pending, out_rate: rate };
  }

  function append(chart, now, values, keep) {
    const { plot, data, series } = chart;
    if (!series.length || !series.every((s) => s.name in values)) return; // not a live figure
    data[0].push(now);
    series.forEach((s, i) => data[i + 1].push(values[s.name]));
    while (data[0].length && data[0][0] < now - keep) data.forEach((column) => column.shift());
    plot.setData(data);
    plot.root.closest("figure").dataset.points = data[0].length;
  }

  function live(event) {
    const msg = event.detail;
    const now = Date.now() / 1000;
    for (const section of sections) {
      if (!section.data || !LIVE.has(section.range) || !section.el.isConnected) continue;
      let values;
      if (msg.type === "state" && msg.state !== "live") { // a gap while the counts are not live
        values = new Proxy({}, { has: () => true, get: () => null });
        section.lastRead = null;
      } else if (msg.type === "stats") {
        values = liveValues(section, msg.streams, now);
      }
      if (values) section.charts.forEach((chart) => append(chart, now, values, RANGES[section.range]));
    }
    if (msg.type === "stats") sparks.forEach((spark) => liveSpark(spark, msg.streams, now));
  }

  // --- overview sparklines ------------------------------------------------------------------
  function sparkOptions(width, stroke) {
    const fill = /^#[0-9a-f]{6}$/i.test(stroke) ? `${stroke}30` : undefined; // app.css: hex
    return { width, height: SPARK_HEIGHT, pxAlign: false, cursor: { show: false }, legend: { show: false },
      select: { show: false }, padding: [2, 0, 0, 0],
      scales: { x: { time: false }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
      axes: [{ show: false }, { show: false }],
      series: [{}, { stroke, fill, width: 1.25, spanGaps: false, points: { show: false } }] };
  }

  function describe(box, name, unit, values) {
    const known = values.filter((v) => v !== null);
    const label = name === "in_rate" ? "In-rate" : "Worst lag";
    box.title = known.length ? `${label}, last hour: now ${value(unit, known[known.length - 1])}, ` +
      `highest ${value(unit, Math.max(...known))}` : `${label}: no history in the last hour`;
    box.setAttribute("aria-label", box.title);
  }

  function drawSpark(spark) {
    spark.plots.forEach((p) => p.destroy());
    spark.plots = [];
    const c = colours();
    spark.el.querySelectorAll("[data-spark-series]").forEach((box) => {
      const name = box.dataset.sparkSeries;
      const values = spark.data[name];
      const unit = name === "in_rate" ? "/s" : "";
      describe(box, name, unit, values);
      const plot = new uPlot(sparkOptions(box.clientWidth || 56, name === "in_rate" ? c.main : c.worst),
        [spark.data.times, values], box);
      spark.plots.push(plot);
      resizer.observe(box);
    });
  }

  function liveSpark(spark, streams, now) {
    if (!spark.el.isConnected || !spark.data || !(spark.token in streams)) return;
    const s = streams[spark.token];
    const lags = s ? Object.values(s.groups).map((g) => g.lag).filter((v) => v !== null) : [];
    const d = spark.data;
    d.times.push(now);
    d.in_rate.push(s ? s.rate : null);
    d.worst_lag.push(lags.length ? Math.max(...lags) : null);
    while (d.times[0] < now - RANGES["1h"]) { d.times.shift(); d.in_rate.shift(); d.worst_lag.shift(); }
    spark.plots.forEach((p, i) => p.setData([d.times, i === 0 ? d.in_rate : d.worst_lag]));
  }

  // One request for the page's streams; more only when their names would make a URL over
  // URL_BYTES (names may be long: proxies refuse request lines past 8 kB).
  function batches(cells) {
    const out = [];
    let query = null;
    for (const td of cells.slice(0, 100)) {
      if (!query || query.toString().length + td.dataset.spark.length > URL_BYTES) {
        query = new URLSearchParams({ range: "1h" });
        out.push(query);
      }
      query.append("key", td.dataset.spark);
    }
    return out;
  }

  async function startSparks(head) {
    const cells = [...document.querySelectorAll("td[data-spark]:not([data-drawn])")];
    if (!cells.length) return;
    cells.forEach((td) => { td.dataset.drawn = "1"; });
    for (const query of batches(cells)) {
      let data;
      try {
        const response = await fetch(`${head.dataset.sparkUrl}?${query}`,
          { headers: { Accept: "application/json" }, credentials: "same-origin" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        data = await response.json();
      } catch (error) {
        head.title = `The history could not be read (${error.message}).`;
        return;
      }
      for (const td of cells) {
        const found = data.streams[td.dataset.spark];
        if (!found || !td.isConnected) continue;
        const spark = { el: td, token: td.dataset.spark, plots: [],
          data: { times: data.times.slice(), in_rate: found.in_rate.slice(), worst_lag: found.worst_lag.slice() } };
        sparks.add(spark);
        drawSpark(spark);
      }
    }
  }

  // --- lifecycle: htmx swaps, dark mode ------------------------------------------------------
  function prune() {
    for (const section of sections) {
      if (section.el.isConnected) continue;
      section.charts.forEach((chart) => chart.plot.destroy());
      sections.delete(section);
    }
    for (const spark of sparks) {
      if (!spark.el.isConnected) { spark.plots.forEach((p) => p.destroy()); sparks.delete(spark); }
    }
  }

  function init() {
    prune();
    document.querySelectorAll("[data-charts]:not([data-drawn])").forEach(start);
    const head = document.querySelector("[data-spark-url]");
    if (head) startSparks(head);
  }

  function restyle() {
    sections.forEach((section) => section.charts.forEach((chart, figure) => draw(section, figure)));
    sparks.forEach(drawSpark);
  }

  // What a chart draws, for the browser tests: the values of the series named (as in the JSON)
  window.streamsAdminCharts = {
    values(name, column = null) {
      for (const section of sections) {
        for (const chart of section.charts.values()) {
          const i = chart.series.findIndex((s) => s.name === name);
          if (i >= 0) return chart.data[column === null ? i + 1 : column];
        }
      }
      return null;
    },
    times(name) { return this.values(name, 0); },
  };
  document.addEventListener("streams-admin:live", live);
  document.addEventListener("htmx:afterSettle", init);
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", restyle);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
