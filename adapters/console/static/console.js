// The console's progressive enhancement: every page works without this file.
// - customer pages follow the change feed (Server-Sent Events) and add new interactions and
//   outbox states without a reload;
// - chart canvases are drawn with Chart.js from the JSON endpoints.
// Text from the hub is only ever put into the page with textContent (never as HTML).
"use strict";

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function when(s) {
  const m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)/.exec(s || "");
  return m ? m[1] + " " + m[2] : (s || "");
}

function show(v) {
  if (v == null) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(url + ": HTTP " + r.status);
  return r.json();
}

function liveCustomer(main) {
  const cid = main.dataset.customer;
  const base = "/api/customers/" + encodeURIComponent(cid);
  const status = document.getElementById("live");
  const body = document.querySelector("#timeline tbody");
  const onFirstPage = !new URLSearchParams(location.search).get("page");
  let newest = Number(main.dataset.newest || 0);
  let busy = false, again = false;

  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      if (onFirstPage) {
        const t = await getJSON(base + "/timeline?after=" + newest + "&limit=200");
        const rows = t.interactions.slice().reverse(); // oldest first, each inserted on top
        for (const it of rows) {
          if (it.key <= newest) continue;
          const tr = document.createElement("tr");
          tr.dataset.key = it.key;
          tr.className = "new";
          cell(tr, when(it.at)); cell(tr, it.type); cell(tr, it.channel); cell(tr, it.touchpoint);
          cell(tr, show(it.data), "data");
          const td = cell(tr, "");
          const a = document.createElement("a");
          a.href = "/rules/explain?customer=" + encodeURIComponent(cid) + "&event_key=" + it.key;
          a.textContent = "explain";
          a.setAttribute("aria-label", "Explain the rules for " + it.type + " at " + when(it.at));
          td.appendChild(a);
          body.insertBefore(tr, body.firstChild);
          newest = Math.max(newest, it.key);
        }
      }
      const o = await getJSON(base + "/intents");
      const ib = document.querySelector("#intents tbody");
      ib.textContent = "";
      for (const i of o.intents) {
        const tr = document.createElement("tr");
        tr.dataset.intent = i.id;
        cell(tr, i.id); cell(tr, i.channel); cell(tr, i.template);
        cell(tr, i.status, "state state-" + i.status);
        cell(tr, i.error); cell(tr, i.source); cell(tr, when(i.updated_at || i.created_at));
        ib.appendChild(tr);
      }
      if (!o.intents.length) { const tr = document.createElement("tr"); cell(tr, "no messages").colSpan = 7; ib.appendChild(tr); }
    } catch (e) {
      status.textContent = "Live updates: " + e.message;
    } finally {
      busy = false;
      if (again) { again = false; refresh(); }
    }
  }

  if (!window.EventSource) return;
  const es = new EventSource(base + "/stream");
  es.addEventListener("hello", () => { status.textContent = "Live: new events appear here"; refresh(); });
  es.addEventListener("change", () => refresh());
  es.onerror = () => { status.textContent = "Live updates: reconnecting…"; };
}

const palette = ["#0b5cad", "#b35900", "#11652f", "#a4101a", "#6639ba", "#0e7490", "#7a4b00", "#4a5360"];

function chart(canvas, config) {
  if (!window.Chart) return null;
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  return new window.Chart(canvas, config);
}

const charts = {
  async sizes(canvas) {
    const m = await getJSON("/api/segments");
    const days = [...new Set(m.history.map((h) => h.day))].sort();
    const segs = [...new Set(m.history.map((h) => h.segment))].sort();
    if (!days.length) {
      const names = Object.keys(m.sizes).sort();
      return chart(canvas, { type: "bar", data: { labels: names, datasets: [{ label: "customers", data: names.map((n) => m.sizes[n]), backgroundColor: palette[0] }] } });
    }
    const val = {};
    for (const h of m.history) val[h.day + "|" + h.segment] = h.size;
    return chart(canvas, { type: "line", data: { labels: days, datasets: segs.map((s, i) => ({
      label: s, data: days.map((d) => val[d + "|" + s] ?? null), borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length] })) } });
  },
  async clv(canvas) {
    const m = await getJSON("/api/segments");
    const h = m.clv_values;
    const labels = h.counts.map((_, i) => h.edges[i] + "–" + h.edges[i + 1]);
    return chart(canvas, { type: "bar", data: { labels, datasets: [{ label: "customers", data: h.counts, backgroundColor: palette[0] }] } });
  },
  async holdout(canvas) {
    const m = await getJSON("/api/segments");
    const h = m.holdout || {};
    const rows = h.by_calibration_repeats || [];
    if (!rows.length) return null;
    return chart(canvas, { type: "bar", options: { scales: { x: { title: { display: true, text: "repeat purchases in calibration" } } } },
      data: { labels: rows.map((r) => r.calibration_repeats),
      datasets: [{ label: "predicted", data: rows.map((r) => r.predicted), backgroundColor: palette[0] },
                 { label: "actual", data: rows.map((r) => r.actual), backgroundColor: palette[1] }] } });
  },
  async outbox(canvas) {
    const o = await getJSON("/api/outbox");
    const chans = Object.keys(o.by_channel).sort();
    const states = ["pending", "sending", "sent", "failed", "suppressed", "cancelled"];
    return chart(canvas, { type: "bar", options: { scales: { x: { stacked: true }, y: { stacked: true } } },
      data: { labels: chans, datasets: states.map((s, i) => ({ label: s, data: chans.map((c) => o.by_channel[c][s] || 0), backgroundColor: palette[i] })) } });
  },
  async fires(canvas) {
    const r = await getJSON("/api/rules");
    const names = r.rules.map((x) => x.key);
    const c = chart(canvas, { type: "bar", data: { labels: names, datasets: [
      { label: "matches since start", data: r.rules.map((x) => x.fired), backgroundColor: palette[0] },
      { label: "failures", data: r.rules.map((x) => x.failures), backgroundColor: palette[3] }] } });
    setInterval(async () => {
      const n = await getJSON("/api/rules");
      c.data.datasets[0].data = n.rules.map((x) => x.fired);
      c.data.datasets[1].data = n.rules.map((x) => x.failures);
      c.update();
    }, 5000);
    return c;
  },
  async fires_hourly(canvas) {
    const r = await getJSON("/api/rules");
    const h = r.fires_by_hour;
    const keys = Object.keys(h.rules).sort();
    return chart(canvas, { type: "bar", options: { scales: { x: { stacked: true }, y: { stacked: true } } },
      data: { labels: h.hours.map((t) => when(t)), datasets: keys.map((k, i) => ({
        label: k, data: h.rules[k], backgroundColor: palette[i % palette.length] })) } });
  },
  async fires_time(canvas) {
    let prev = await getJSON("/api/rules");
    const c = chart(canvas, { type: "line", data: { labels: [], datasets: [
      { label: "matches per 5 s", data: [], borderColor: palette[0], backgroundColor: palette[0] },
      { label: "failures per 5 s", data: [], borderColor: palette[3], backgroundColor: palette[3] }] } });
    setInterval(async () => {
      const n = await getJSON("/api/rules");
      c.data.labels.push(new Date().toLocaleTimeString());
      c.data.datasets[0].data.push(n.stats.matched - prev.stats.matched);
      c.data.datasets[1].data.push(n.stats.failures - prev.stats.failures);
      prev = n;
      if (c.data.labels.length > 120) { c.data.labels.shift(); for (const d of c.data.datasets) d.data.shift(); }
      c.update();
    }, 5000);
    return c;
  },
  async throughput(canvas) {
    let prev = await getJSON("/api/hub");
    const c = chart(canvas, { type: "line", data: { labels: [], datasets: [{ label: "events/s", data: [], borderColor: palette[0], backgroundColor: palette[0] }] } });
    setInterval(async () => {
      const h = await getJSON("/api/hub");
      const rate = (h.events_committed - prev.events_committed) / Math.max(0.001, h.at - prev.at);
      prev = h;
      c.data.labels.push(new Date(h.at * 1000).toLocaleTimeString());
      c.data.datasets[0].data.push(Math.round(rate));
      if (c.data.labels.length > 60) { c.data.labels.shift(); c.data.datasets[0].data.shift(); }
      c.update();
    }, 2000);
    return c;
  },
};

document.addEventListener("DOMContentLoaded", () => {
  const main = document.getElementById("main");
  if (main && main.dataset.customer) liveCustomer(main);
  for (const canvas of document.querySelectorAll("canvas[data-chart]")) {
    const draw = charts[canvas.dataset.chart];
    if (draw) draw(canvas).then(() => { canvas.dataset.drawn = "1"; }).catch((e) => { canvas.dataset.error = e.message; });
  }
});
