/// The self-contained dashboard `GET /` serves: inline CSS, JavaScript and SVG, no network fetch but its own
/// server's `/status.json`, `/metrics` and `/history.json` (so it works on an air-gapped cluster).
///
/// It polls once a second and draws the training loss per step (raw and smoothed), the test accuracy per epoch,
/// samples/s, every worker's clock (the SSP spread is the bars' spread), shard versions and stale counts, and the
/// job's phase. Rendered elements carry `id`s and `data-` attributes the browser test reads
/// (`#loss-raw[data-points]`, `#workers tr[data-worker]`).
enum DashboardPage {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <title>SwiftPS dashboard</title>
        <style>
        body { font: 14px system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
        header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 20px; align-items: center; }
        header h1 { font-size: 18px; margin: 0; }
        .badge { padding: 2px 10px; border-radius: 10px; font-weight: 600; background: #888; }
        .badge.running { background: #2e9d57; } .badge.waiting { background: #c98a14; }
        .badge.finished { background: #3569c9; } .badge.stopping, .badge.paused { background: #b03a3a; }
        main { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 14px; padding: 14px; }
        section { background: #fff; border-radius: 6px; padding: 10px 14px; box-shadow: 0 1px 3px #0002; }
        h2 { font-size: 15px; margin: 4px 0 8px; }
        table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
        th, td { text-align: right; padding: 2px 6px; border-bottom: 1px solid #eee; }
        th:first-child, td:first-child { text-align: left; }
        .dead { color: #b03a3a; } .left { color: #888; }
        .bar { height: 10px; background: #3569c9; display: inline-block; vertical-align: middle; }
        #facts span { margin-right: 16px; }
        svg text { font: 11px system-ui, sans-serif; fill: #444; }
        </style>
        </head>
        <body>
        <header><h1>SwiftPS</h1><span id="phase" class="badge">connecting</span><span id="job"></span>
        <span id="updated"></span></header>
        <main>
        <section><h2>Training loss per step</h2><svg id="loss-chart" width="560" height="260"></svg></section>
        <section><h2>Test accuracy per epoch</h2><svg id="accuracy-chart" width="560" height="260"></svg></section>
        <section><h2>Samples/s</h2><svg id="throughput-chart" width="560" height="220"></svg>
        <div id="facts"></div></section>
        <section><h2>Workers</h2><table id="workers"><thead><tr><th>worker</th><th>rank</th><th>state</th>
        <th>clock</th><th></th><th>pushes</th><th>last seen</th><th>rejoins</th></tr></thead><tbody></tbody></table>
        <p id="spread"></p></section>
        <section><h2>Shards</h2><table id="shards"><thead><tr><th>shard</th><th>version</th><th>pushes</th>
        <th>pulls</th><th>stale dropped</th><th>stale scaled</th></tr></thead><tbody></tbody></table></section>
        </main>
        <script>
        "use strict";
        const NS = "http://www.w3.org/2000/svg";
        const COLORS = ["#3569c9", "#d9534f", "#2e9d57", "#c98a14", "#7b52ab", "#17a2b8"];
        let history = { steps: [], epochs: [] };

        function el(name, attrs, parent, text) {
          const node = document.createElementNS(NS, name);
          for (const key in attrs) node.setAttribute(key, attrs[key]);
          if (text !== undefined) node.textContent = text;
          if (parent) parent.appendChild(node);
          return node;
        }

        function niceTicks(lo, hi, count, integer) {
          if (!(hi > lo)) { hi = lo + 1; }
          const raw = (hi - lo) / count, mag = Math.pow(10, Math.floor(Math.log10(raw)));
          let step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw);
          if (integer) step = Math.max(1, Math.round(step));
          const ticks = [];
          for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
          return ticks;
        }

        // series: [{id, points: [[x, y]], color, width, opacity, dots}]
        function lineChart(svg, series, xLabel, yLabel, yRange) {
          while (svg.firstChild) svg.removeChild(svg.firstChild);
          const W = +svg.getAttribute("width"), H = +svg.getAttribute("height");
          const L = 56, R = 12, T = 10, B = 36;
          const all = series.flatMap(s => s.points);
          let x0 = Math.min(...all.map(p => p[0])), x1 = Math.max(...all.map(p => p[0]));
          let y0 = Math.min(...all.map(p => p[1])), y1 = Math.max(...all.map(p => p[1]));
          if (!all.length) { x0 = 0; x1 = 1; y0 = 0; y1 = 1; }
          if (yRange) { y0 = Math.min(y0, yRange[0]); y1 = Math.max(y1, yRange[1]); }
          if (x1 === x0) x1 = x0 + 1;
          if (y1 === y0) { y1 = y0 + 1; }
          const xt = niceTicks(x0, x1, 6, true), yt = niceTicks(y0, y1, 5);
          x0 = Math.min(x0, xt[0]); x1 = Math.max(x1, xt[xt.length - 1]);
          y0 = Math.min(y0, yt[0]); y1 = Math.max(y1, yt[yt.length - 1]);
          const sx = x => L + (x - x0) / (x1 - x0) * (W - L - R);
          const sy = y => H - B - (y - y0) / (y1 - y0) * (H - T - B);
          const axes = el("g", { "class": "axes" }, svg);
          for (const t of xt) {
            el("line", { x1: sx(t), x2: sx(t), y1: T, y2: H - B, stroke: "#eee" }, axes);
            el("text", { x: sx(t), y: H - B + 14, "text-anchor": "middle" }, axes, String(t));
          }
          for (const t of yt) {
            el("line", { x1: L, x2: W - R, y1: sy(t), y2: sy(t), stroke: "#eee" }, axes);
            el("text", { x: L - 6, y: sy(t) + 4, "text-anchor": "end" }, axes, String(t));
          }
          el("rect", { x: L, y: T, width: W - L - R, height: H - T - B, fill: "none", stroke: "#999" }, axes);
          el("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, axes, xLabel);
          el("text", { x: 12, y: (T + H - B) / 2, "text-anchor": "middle",
                       transform: "rotate(-90 12 " + (T + H - B) / 2 + ")" }, axes, yLabel);
          for (const s of series) {
            const d = s.points.map((p, i) => (i ? "L" : "M") + sx(p[0]).toFixed(1) + " " + sy(p[1]).toFixed(1)).join("");
            el("path", { id: s.id, d: d || "M0 0", fill: "none", stroke: s.color, "stroke-width": s.width || 1.5,
                         "stroke-opacity": s.opacity || 1, "data-points": s.points.length }, svg);
            if (s.dots) for (const p of s.points) el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: s.color }, svg);
          }
        }

        function smooth(points, weight) {
          let last = 0, n = 0;
          return points.map(p => { last = last * weight + (1 - weight) * p[1]; n++;
                                   return [p[0], last / (1 - Math.pow(weight, n))]; });
        }

        function parseMetrics(text) {
          const values = {};
          for (const line of text.split("\n")) {
            if (!line || line[0] === "#") continue;
            const space = line.lastIndexOf(" ");
            values[line.slice(0, space)] = parseFloat(line.slice(space + 1));
          }
          return values;
        }

        async function getJSON(path) { const r = await fetch(path, { cache: "no-store" }); return r.json(); }

        async function refreshHistory() {
          const since = history.first === undefined ? 0 : history.first + history.steps.length;
          const h = await getJSON("/history.json?since=" + since);
          if (history.first === undefined || h.first !== since) { history.first = h.first; history.steps = []; }
          history.steps = history.steps.concat(h.steps);
          history.epochs = h.epochs;
        }

        function drawCharts() {
          const loss = history.steps.filter(s => s[1] !== null).map(s => [s[0], s[1]]);
          lineChart(document.getElementById("loss-chart"), [
            { id: "loss-raw", points: loss, color: COLORS[0], opacity: 0.3, width: 1 },
            { id: "loss-smoothed", points: smooth(loss, 0.9), color: COLORS[0], width: 2 },
          ], "step", "loss");
          const accuracy = history.epochs.filter(e => e[2] !== null).map(e => [e[0], e[2]]);
          lineChart(document.getElementById("accuracy-chart"),
            [{ id: "accuracy", points: accuracy, color: COLORS[2], width: 2, dots: true }],
            "epoch", "test accuracy", [0, 1]);
          const rate = [];
          const window = Math.max(1, Math.floor(history.steps.length / 60));
          for (let i = window; i < history.steps.length; i += window) {
            const a = history.steps[i - window], b = history.steps[i];
            let samples = 0;
            for (let j = i - window + 1; j <= i; j++) samples += history.steps[j][2];
            if (b[3] > a[3]) rate.push([b[0], samples / (b[3] - a[3])]);
          }
          lineChart(document.getElementById("throughput-chart"),
            [{ id: "throughput", points: rate, color: COLORS[4], width: 1.5 }], "step", "samples/s", [0, 0]);
        }

        function cell(row, text, cls) { const td = row.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; }

        function drawStatus(status, metrics) {
          const phase = Object.keys(metrics).find(k => k.startsWith("swiftps_job_phase{") && metrics[k] === 1);
          const phaseName = phase ? phase.split('"')[1] : (status.mode === "store" ? "store" : "unknown");
          const badge = document.getElementById("phase");
          badge.textContent = phaseName; badge.className = "badge " + phaseName;
          const job = status.job;
          document.getElementById("job").textContent = job
            ? job.mode + " · " + job.workers + " workers · " + job.model + " on " + job.data + " · step "
              + Math.max(status.completed_steps, history.steps.length ? history.steps[history.steps.length - 1][0] + 1 : 0)
              + " / " + job.totalSteps
            : "parameter store";
          document.getElementById("updated").textContent = "uptime " + status.uptime_s.toFixed(0) + " s";
          const body = document.querySelector("#workers tbody");
          body.innerHTML = "";
          const workers = status.workers || [];
          const maxClock = Math.max(1, ...workers.map(w => w.clock));
          for (const w of workers) {
            const row = body.insertRow(); row.dataset.worker = w.name; row.className = w.state;
            cell(row, w.name); cell(row, w.rank); cell(row, w.state); cell(row, w.clock);
            const bar = cell(row, "");
            const span = document.createElement("span"); span.className = "bar";
            span.style.width = (100 * w.clock / maxClock).toFixed(1) + "px"; bar.appendChild(span);
            cell(row, w.pushes); cell(row, w.last_seen_s.toFixed(1) + " s"); cell(row, w.rejoins);
          }
          const live = workers.filter(w => w.state === "live").map(w => w.clock);
          document.getElementById("spread").textContent = live.length
            ? "clock spread (max − min live): " + (Math.max(...live) - Math.min(...live))
              + (status.staleness !== undefined && job && job.mode === "ssp" ? " (bound " + status.staleness + ")" : "")
            : "no live workers";
          const shards = document.querySelector("#shards tbody");
          shards.innerHTML = "";
          for (const s of status.shards) {
            const row = shards.insertRow(); row.dataset.shard = s.index;
            cell(row, s.index); cell(row, s.version); cell(row, s.pushes); cell(row, s.pulls);
            cell(row, s.stale_dropped); cell(row, s.stale_scaled);
          }
          const last = history.steps[history.steps.length - 1];
          const facts = [
            ["samples", metrics["swiftps_samples_total"] || 0],
            ["stale dropped", status.stale_dropped], ["stale scaled", status.stale_scaled],
            ["checkpoints", metrics["swiftps_checkpoints_total"] || 0],
            ["connections", status.connections],
            ["last loss", last && last[1] !== null ? last[1].toFixed(4) : "–"],
          ];
          document.getElementById("facts").innerHTML = "";
          for (const [k, v] of facts) {
            const span = document.createElement("span"); span.textContent = k + ": " + v;
            document.getElementById("facts").appendChild(span);
          }
        }

        async function refresh() {
          try {
            const [status, metricsText] = await Promise.all([
              getJSON("/status.json"), fetch("/metrics", { cache: "no-store" }).then(r => r.text())]);
            await refreshHistory();
            drawCharts();
            drawStatus(status, parseMetrics(metricsText));
            document.body.dataset.refreshed = String(+(document.body.dataset.refreshed || 0) + 1);
          } catch (error) {
            document.getElementById("phase").textContent = "unreachable";
            document.getElementById("phase").className = "badge stopping";
          }
        }
        refresh();
        setInterval(refresh, 1000);
        </script>
        </body>
        </html>

        """#
}
