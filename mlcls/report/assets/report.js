"use strict";
// mlcls evaluation report: reads the JSON embedded in the page and draws everything with plain
// DOM and <canvas> (no library, no network). Counts at a threshold come from per-class score
// histograms: at the thresholds k / bins they are exactly what compute_metrics counts.
(function () {
  const D = JSON.parse(document.getElementById("report-data").textContent);
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  const fmt = (v, d = 2) => (v === null || v === undefined || Number.isNaN(v) ? "n/a" : Number(v).toFixed(d));
  const main = $("main");
  main.innerHTML = "";

  function section(id, title, html) {
    const s = document.createElement("section");
    s.id = id;
    s.innerHTML = (title ? "<h2>" + esc(title) + "</h2>" : "") + (html || "");
    main.appendChild(s);
    return s;
  }

  // ---------------------------------------------------------------- plotting on a canvas
  function niceTicks(lo, hi, n) {
    const span = hi - lo || 1;
    const step0 = Math.pow(10, Math.floor(Math.log10(span / n)));
    const step = [1, 2, 5, 10].map((m) => m * step0).find((s) => span / s <= n) || step0 * 10;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9 * span; v += step) out.push(+v.toFixed(10));
    return out;
  }

  function plot(canvas, o) {
    const ctx = canvas.getContext("2d");
    const W = canvas.width, H = canvas.height, L = 52, R = 12, T = o.title ? 22 : 10, B = 36;
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, W, H);
    const xs = [], ys = [];
    (o.series || []).forEach((s) => s.x.forEach((v, i) => { if (v !== null && s.y[i] !== null) { xs.push(v); ys.push(s.y[i]); } }));
    const fx = o.xlog ? (v) => Math.log10(Math.max(v, 1e-12)) : (v) => v;
    const fy = o.ylog ? (v) => Math.log10(Math.max(v, 1e-12)) : (v) => v;
    let xmin = o.xmin ?? Math.min(...xs), xmax = o.xmax ?? Math.max(...xs);
    let ymin = o.ymin ?? Math.min(...ys), ymax = o.ymax ?? Math.max(...ys);
    if (!xs.length) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }
    if (xmax === xmin) xmax = xmin + 1;
    if (ymax === ymin) ymax = ymin + 1;
    const X = (v) => L + ((fx(v) - fx(xmin)) / (fx(xmax) - fx(xmin))) * (W - L - R);
    const Y = (v) => H - B - ((fy(v) - fy(ymin)) / (fy(ymax) - fy(ymin))) * (H - T - B);
    ctx.strokeStyle = "#888"; ctx.lineWidth = 1; ctx.fillStyle = "#333"; ctx.font = "11px sans-serif";
    ctx.beginPath(); ctx.moveTo(L, T); ctx.lineTo(L, H - B); ctx.lineTo(W - R, H - B); ctx.stroke();
    const logTicks = (lo, hi) => {
      const out = [], few = Math.log10(hi / lo) < 2;
      for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
        (few ? [1, 2, 5] : [1]).forEach((m) => { const v = m * Math.pow(10, e); if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v); });
      return out;
    };
    const ticks = (lo, hi, log) => (log ? logTicks(Math.max(lo, 1e-12), hi) : niceTicks(lo, hi, 5));
    const label = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(0) : String(+v.toPrecision(4)));
    ctx.textAlign = "center";
    ticks(xmin, xmax, o.xlog).forEach((v) => { const x = X(v); ctx.fillText(label(v), x, H - B + 14); ctx.beginPath(); ctx.moveTo(x, H - B); ctx.lineTo(x, H - B + 4); ctx.stroke(); });
    ctx.textAlign = "right";
    ticks(ymin, ymax, o.ylog).forEach((v) => { const y = Y(v); ctx.fillText(label(v), L - 6, y + 4); ctx.beginPath(); ctx.moveTo(L - 4, y); ctx.lineTo(L, y); ctx.stroke(); });
    ctx.textAlign = "center";
    if (o.xlabel) ctx.fillText(o.xlabel, L + (W - L - R) / 2, H - 6);
    if (o.title) { ctx.font = "bold 12px sans-serif"; ctx.fillText(o.title, L + (W - L - R) / 2, 14); ctx.font = "11px sans-serif"; }
    if (o.ylabel) { ctx.save(); ctx.translate(12, T + (H - T - B) / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(o.ylabel, 0, 0); ctx.restore(); }
    if (o.diagonal) { ctx.strokeStyle = "#bbb"; ctx.setLineDash([4, 4]); ctx.beginPath(); ctx.moveTo(X(xmin), Y(ymin)); ctx.lineTo(X(xmax), Y(ymax)); ctx.stroke(); ctx.setLineDash([]); }
    ctx.save(); ctx.beginPath(); ctx.rect(L, T - 2, W - L - R + 2, H - T - B + 4); ctx.clip();
    (o.series || []).forEach((s) => {
      ctx.strokeStyle = ctx.fillStyle = s.color || "#2563eb";
      ctx.lineWidth = s.width || 1.5;
      ctx.globalAlpha = s.alpha || 1;
      if (s.kind === "bar") {
        const w = s.barWidth;
        s.x.forEach((v, i) => { if (s.y[i] > 0 || (!o.ylog && s.y[i] !== null)) { const x0 = X(v), x1 = X(v + w); ctx.fillRect(x0, Y(s.y[i]), Math.max(1, x1 - x0 - 1), Y(o.ylog ? ymin : 0) - Y(s.y[i])); } });
      } else if (s.kind === "dots") {
        s.x.forEach((v, i) => { if (s.y[i] !== null) { ctx.beginPath(); ctx.arc(X(v), Y(s.y[i]), s.r || 3, 0, 2 * Math.PI); ctx.fill(); } });
      } else {
        ctx.beginPath();
        let started = false;
        s.x.forEach((v, i) => { if (s.y[i] === null) return; const x = X(v), y = Y(s.y[i]); if (!started) { ctx.moveTo(x, y); started = true; } else ctx.lineTo(x, y); });
        ctx.stroke();
      }
      ctx.globalAlpha = 1;
    });
    (o.points || []).forEach((p) => { ctx.fillStyle = p.color || "#d92d20"; ctx.beginPath(); ctx.arc(X(p.x), Y(p.y), p.r || 5, 0, 2 * Math.PI); ctx.fill(); });
    ctx.restore();
    if (o.legend) {
      ctx.textAlign = "left";
      o.legend.forEach((l, i) => { ctx.fillStyle = l.color; ctx.fillRect(W - R - 150, T + 4 + i * 15, 10, 10); ctx.fillStyle = "#333"; ctx.fillText(l.label, W - R - 135, T + 13 + i * 15); });
    }
  }

  function canvas(id, w, h) {
    return '<canvas id="' + id + '" width="' + w + '" height="' + h + '"></canvas>';
  }

  function sortableTable(container, columns, rows, opts) {
    // columns: [{key, label, fmt(v,row), cls(v,row)}]; click a header to sort, again to reverse
    let sortKey = opts.sortKey, desc = opts.desc !== false, filter = "";
    const wrap = container;
    function render() {
      const shown = rows.filter((r) => !filter || String(r[columns[0].key]).toLowerCase().includes(filter));
      shown.sort((a, b) => {
        const va = a[sortKey], vb = b[sortKey];
        if (va === vb) return 0;
        if (va === null || va === undefined) return 1;
        if (vb === null || vb === undefined) return -1;
        const c = typeof va === "string" ? va.localeCompare(vb) : va - vb;
        return desc ? -c : c;
      });
      const head = columns.map((c) => '<th data-key="' + c.key + '" class="' + (c.key === sortKey ? (desc ? "sorted-desc" : "sorted-asc") : "") + '" title="' + esc(c.title || "") + '">' + esc(c.label) + "</th>").join("");
      const body = shown.map((r) => '<tr data-index="' + r.index + '"' + (opts.selected && opts.selected() === r.index ? ' class="selected"' : "") + ">" + columns.map((c) => {
        const v = r[c.key];
        const cls = c.cls ? c.cls(v, r) : "";
        return "<td" + (cls ? ' class="' + cls + '"' : "") + ">" + (c.fmt ? c.fmt(v, r) : esc(v ?? "")) + "</td>";
      }).join("") + "</tr>").join("");
      wrap.innerHTML = '<table id="' + opts.id + '"><thead><tr>' + head + "</tr></thead><tbody>" + body + "</tbody></table>";
      wrap.querySelectorAll("th").forEach((th) => th.addEventListener("click", () => {
        const k = th.dataset.key;
        desc = k === sortKey ? !desc : typeof rows[0]?.[k] !== "string";
        sortKey = k;
        render();
      }));
      if (opts.onClick) wrap.querySelectorAll("tbody tr").forEach((tr) => tr.addEventListener("click", () => opts.onClick(+tr.dataset.index)));
      if (opts.count) opts.count(shown.length);
    }
    render();
    return { render, setFilter: (f) => { filter = f.toLowerCase(); render(); } };
  }

  if (D.mode === "compare") return renderCompare();

  // ---------------------------------------------------------------- single report
  const M = D.meta, C = D.classes, NB = M.bins;
  const names = C.map((c) => c.name);
  $("subtitle").textContent = (M.checkpoint || "") + (M.config ? "  |  config " + M.config : "");
  document.title = "mlcls report: " + (M.name || M.checkpoint || "");

  // per-class cumulative counts from the sparse histograms: ge[k] = entries with score >= k / bins
  const cumCache = {};
  function cum(c) {
    if (cumCache[c]) return cumCache[c];
    const h = D.hist[c], pos = new Int32Array(NB + 2), neg = new Int32Array(NB + 2);
    h.pb.forEach((b, i) => (pos[b] += h.pc[i]));
    h.nb.forEach((b, i) => (neg[b] += h.nc[i]));
    for (let k = NB - 1; k >= 0; k--) { pos[k] += pos[k + 1]; neg[k] += neg[k + 1]; }
    return (cumCache[c] = { pos, neg, P: pos[0] });
  }
  function rates(tp, fp, fn) {
    const p = tp + fp > 0 ? (100 * tp) / (tp + fp) : 0, r = tp + fn > 0 ? (100 * tp) / (tp + fn) : 0;
    const f = 2 * tp + fp + fn > 0 ? (100 * 2 * tp) / (2 * tp + fp + fn) : 0;
    return { P: p, R: r, F1: f };
  }
  function countsAt(c, k) {
    const h = cum(c), tp = h.pos[k], fp = h.neg[k];
    return { tp, fp, fn: h.P - tp, ...rates(tp, fp, h.P - tp) };
  }

  // thresholds the explorer holds: null = the one in use (exact counts from the table)
  const edited = C.map(() => null);
  let selected = null;

  // -------------------------------------------------------------- header
  const S = D.summary, H = D.at_half, Z = D.zeros;
  const keys = [["mAP", "mAP"], ["mAUROC", "mean ROC AUC"], ["CP", "CP"], ["CR", "CR"], ["CF1", "CF1"], ["OP", "OP"], ["OR", "OR"], ["OF1", "OF1"], ["mSpec", "mean specificity"], ["subset_accuracy", "exact match"], ["label_accuracy", "label accuracy"]];
  const info = [
    ["checkpoint", M.checkpoint], ["config", M.config], ["split", M.split], ["images", M.num_images], ["classes", M.num_classes],
    ["thresholds", M.thresholds_source], ["test-time augmentation", Array.isArray(M.tta) ? M.tta.map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join(" + ") : M.tta], ["bootstrap CI", M.ci], ["evaluator", M.evaluator], ["written", M.created],
  ].filter((kv) => kv[1] !== undefined && kv[1] !== null && kv[1] !== "");
  let warn = "";
  if (M.same_samples && M.same_samples.length) {
    warn += '<div class="warn" id="same-samples-warning"><b>These numbers are optimistic.</b> Something was chosen on the samples they are reported on: ' +
      M.same_samples.map(esc).join("; ") + ". Report on samples held out of every choice (docs/bags.md, \u201cMRNet has no test split\u201d).</div>";
  }
  if (S.OR < 5 || S.CF1 <= Z.CF1 + 1) {
    warn += '<div class="warn" id="collapse-warning"><b>The model predicts almost nothing.</b> At the thresholds in use it finds ' + fmt(S.OR, 1) +
      "% of the true labels (overall recall). Its label accuracy (" + fmt(S.label_accuracy, 1) + "%) is close to that of predicting no label at all (" +
      fmt(Z.label_accuracy, 1) + "%): with rare labels, accuracy says nothing. Look at recall, F1 and AP per class below; lower thresholds or a weighted loss may help.</div>";
  }
  section("header", "Summary",
    '<div class="row"><div class="kv">' + info.map((kv) => "<b>" + esc(kv[0]) + "</b><span>" + esc(kv[1]) + "</span>").join("") + "</div>" +
    '<table id="summary-table"><thead><tr><th>metric (%)</th><th title="the thresholds the header names">thresholds in use</th><th>at 0.5</th><th title="every label predicted negative">predict nothing</th><th title="with the thresholds set in the explorer">your thresholds</th></tr></thead><tbody>' +
    keys.map((k) => "<tr><td>" + k[1] + "</td><td>" + fmt(S[k[0]]) + "</td><td>" + fmt(H[k[0]]) + "</td><td>" + fmt(Z[k[0]]) + '</td><td id="live-' + k[0] + '">' + (["mAP", "mAUROC", "mSpec", "subset_accuracy", "label_accuracy"].includes(k[0]) ? "" : fmt(S[k[0]])) + "</td></tr>").join("") +
    "</tbody></table></div>" + warn +
    '<p class="note">mAP averages AP over the ' + (M.num_classes - (S.num_classes_skipped || 0)) + " classes with positives; for \u201cpredict nothing\u201d (every score 0) it is the chance level, each class's frequency. CP/CR average precision/recall over classes, OP/OR over all labels. Entries with target -1 (unknown) are left out everywhere.</p>");

  function updateLive() {
    let tp = 0, fp = 0, fn = 0, sp = 0, sr = 0;
    C.forEach((row, c) => {
      const k = edited[c];
      const n = k === null ? row : countsAt(c, k);
      const r = k === null ? { P: row.P, R: row.R } : n;
      tp += n.tp; fp += n.fp; fn += n.fn; sp += r.P; sr += r.R;
    });
    const cp = sp / C.length, cr = sr / C.length, o = rates(tp, fp, fn);
    const v = { CP: cp, CR: cr, CF1: cp + cr > 0 ? (2 * cp * cr) / (cp + cr) : 0, OP: o.P, OR: o.R, OF1: o.F1 };
    Object.keys(v).forEach((k) => ($("live-" + k).textContent = fmt(v[k])));
  }

  // -------------------------------------------------------------- per-class table
  function withCI(key) {  // the value, and its bootstrap interval when the evaluation computed one
    return (v, r) => fmt(v) + (r[key + "_ci"] ? ' <span class="ci" title="' + esc(M.ci || "bootstrap interval") + '">[' + fmt(r[key + "_ci"][0], 1) + ", " + fmt(r[key + "_ci"][1], 1) + "]</span>" : "");
  }
  const rows = C.map((c, i) => ({ ...c, index: i, gap: c.AP === null ? null : c.AP - c.F1 }));
  const hasTrain = C.some((c) => c.train_pos !== null && c.train_pos !== undefined);
  const cols = [
    { key: "name", label: "class", fmt: (v) => esc(v) },
    { key: "pos", label: "positives", title: "positives in this split" },
    ...(hasTrain ? [{ key: "train_pos", label: "train pos.", title: "positives in the training set" }] : []),
    { key: "AP", label: "AP", fmt: withCI("AP"), cls: (v) => (v !== null && v < 50 ? "bad" : "") },
    { key: "AUROC", label: "AUROC", fmt: withCI("AUROC"), title: "area under the ROC curve (%)" },
    { key: "P", label: "P", fmt: (v) => fmt(v), title: "precision at the threshold in use" },
    { key: "R", label: "R", fmt: withCI("R"), cls: (v, r) => (r.pos > 0 && v < 10 ? "bad" : ""), title: "recall (sensitivity) at the threshold in use" },
    { key: "spec", label: "spec.", fmt: withCI("spec"), title: "specificity at the threshold in use" },
    { key: "F1", label: "F1", fmt: withCI("F1") },
    { key: "thr", label: "thr", fmt: (v) => fmt(v, 3) },
    { key: "fp", label: "FP", title: "false positives" },
    { key: "fn", label: "FN", title: "missed positives" },
    { key: "ece", label: "ECE", fmt: (v) => fmt(v), title: "expected calibration error (%)" },
  ];
  const tableSec = section("classes", "Per-class results",
    '<p><input type="text" id="class-filter" placeholder="filter classes by name"> <span class="note" id="class-count"></span> <span class="note">Click a header to sort, a row to explore the class below.</span></p><div id="class-table-wrap"></div>');
  const table = sortableTable($("class-table-wrap"), cols, rows, {
    id: "class-table", sortKey: "index", desc: false, onClick: (i) => select(i), selected: () => selected,
    count: (n) => ($("class-count").textContent = n + " of " + C.length + " classes"),
  });
  $("class-filter").addEventListener("input", (e) => table.setFilter(e.target.value));

  // -------------------------------------------------------------- threshold explorer
  section("explorer", "Threshold explorer",
    '<p><label>class <select id="exp-class">' + names.map((n, i) => '<option value="' + i + '">' + esc(n) + "</option>").join("") + "</select></label> " +
    '<span class="note" id="exp-note"></span></p>' +
    '<p><input type="range" id="thr-slider" min="0" max="' + NB + '" step="1" value="500"> threshold <b id="exp-thr">0.500</b></p>' +
    '<p class="out">P <span id="exp-p"></span> R <span id="exp-r"></span> F1 <span id="exp-f1"></span> TP <span id="exp-tp"></span> FP <span id="exp-fp"></span> FN <span id="exp-fn"></span></p>' +
    '<p><button id="exp-reset">back to the threshold in use</button><button id="exp-best">F1-best for this class</button><button id="exp-download">Download thresholds</button>' +
    '<span class="note">The JSON works with <code>tools/test.py --thr-file FILE</code> and <code>inference_model(model, images, thr="FILE")</code>; classes you did not move keep their thresholds.</span></p>' +
    '<p class="out">sensitivity <span id="exp-sens"></span> specificity <span id="exp-spec"></span></p>' +
    '<div class="row">' + canvas("pr-canvas", 360, 300) + canvas("roc-canvas", 360, 300) + canvas("hist-canvas", 520, 300) + "</div>");

  // ROC from the same cumulative counts: (false-positive rate, true-positive rate) at every bin edge
  function rocCurve(c) {
    const h = cum(c), N = h.neg[0], F = [0], T = [0];
    for (let k = NB; k >= 0; k--) {
      if (k < NB && h.pos[k] === h.pos[k + 1] && h.neg[k] === h.neg[k + 1]) continue;
      F.push(N ? (100 * h.neg[k]) / N : 0);
      T.push(h.P ? (100 * h.pos[k]) / h.P : 0);
    }
    return { F, T, N };
  }

  function prCurve(c) {
    const h = cum(c), R = [], P = [];
    for (let k = NB; k >= 0; k--) {
      if (k < NB && h.pos[k] === h.pos[k + 1] && h.neg[k] === h.neg[k + 1]) continue;
      const tp = h.pos[k], fp = h.neg[k];
      if (tp + fp === 0) continue;
      R.push(h.P ? (100 * tp) / h.P : 0);
      P.push((100 * tp) / (tp + fp));
    }
    return { R, P };
  }

  function drawExplorer() {
    const c = selected, k = +$("thr-slider").value, n = countsAt(c, k);
    $("exp-thr").textContent = (k / NB).toFixed(3);
    $("exp-p").textContent = fmt(n.P); $("exp-r").textContent = fmt(n.R); $("exp-f1").textContent = fmt(n.F1);
    $("exp-tp").textContent = n.tp; $("exp-fp").textContent = n.fp; $("exp-fn").textContent = n.fn;
    const pr = prCurve(c);
    plot($("pr-canvas"), { title: "PR curve: " + names[c], series: [{ x: pr.R, y: pr.P, color: "#2563eb" }], points: [{ x: n.R, y: n.P }], xmin: 0, xmax: 100, ymin: 0, ymax: 100, xlabel: "recall (%)", ylabel: "precision (%)" });
    const roc = rocCurve(c), fpr = roc.N ? (100 * n.fp) / roc.N : 0;
    $("exp-sens").textContent = fmt(n.R); $("exp-spec").textContent = roc.N ? fmt(100 - fpr) : "n/a";
    plot($("roc-canvas"), { title: "ROC curve: " + names[c] + (C[c].AUROC !== null ? " (AUC " + fmt(C[c].AUROC) + ")" : ""), series: [{ x: [0, 100], y: [0, 100], color: "#bbb" }, { x: roc.F, y: roc.T, color: "#7c3aed" }], points: [{ x: fpr, y: n.R }], xmin: 0, xmax: 100, ymin: 0, ymax: 100, xlabel: "1 - specificity (%)", ylabel: "sensitivity (%)" });
    const h = D.hist[c], step = 20, nb = NB / step; // 50 display bins
    const pos = new Array(nb + 1).fill(0), neg = new Array(nb + 1).fill(0);
    h.pb.forEach((b, i) => (pos[Math.min(nb, Math.floor(b / step))] += h.pc[i]));
    h.nb.forEach((b, i) => (neg[Math.min(nb, Math.floor(b / step))] += h.nc[i]));
    const x = pos.map((_, i) => i / nb);
    plot($("hist-canvas"), {
      title: "scores of " + names[c] + " (log count)", ylog: true, xmin: 0, xmax: 1.02, ymin: 0.8,
      series: [{ x, y: neg, kind: "bar", barWidth: 1 / nb, color: "#d92d20", alpha: 0.55 }, { x, y: pos, kind: "bar", barWidth: 1 / nb, color: "#1a7f37", alpha: 0.55 }, { x: [k / NB, k / NB], y: [0.8, Math.max(2, ...neg, ...pos) * 1.5], color: "#111", width: 2 }],
      xlabel: "predicted probability", ylabel: "images",
      legend: [{ color: "#1a7f37", label: "positives (" + h.pc.reduce((a, b) => a + b, 0) + ")" }, { color: "#d92d20", label: "negatives (" + h.nc.reduce((a, b) => a + b, 0) + ")" }],
    });
  }

  function select(c) {
    selected = c;
    $("exp-class").value = String(c);
    const inUse = C[c].thr;
    $("thr-slider").value = String(edited[c] ?? Math.round(inUse * NB));
    $("exp-note").textContent = "threshold in use " + fmt(inUse, 4) + " (" + (M.thresholds_source || "") + "); the slider moves in steps of " + 1 / NB + ".";
    drawExplorer();
    drawGallery();
    drawCalibration();
    table.render();
  }
  $("exp-class").addEventListener("change", (e) => select(+e.target.value));
  $("thr-slider").addEventListener("input", () => { edited[selected] = +$("thr-slider").value; drawExplorer(); updateLive(); });
  $("exp-reset").addEventListener("click", () => { edited[selected] = null; select(selected); updateLive(); });
  $("exp-best").addEventListener("click", () => {
    let best = 0, bestF = -1;
    for (let k = 0; k <= NB; k++) { const f = countsAt(selected, k).F1; if (f > bestF) { bestF = f; best = k; } }
    edited[selected] = best; $("thr-slider").value = String(best); drawExplorer(); updateLive();
  });
  $("exp-download").addEventListener("click", () => {
    const record = {
      values: C.map((c, i) => (edited[i] === null ? c.thr : edited[i] / NB)), classes: names, split: M.split,
      objective: "manual", source: "report.html of " + (M.checkpoint || ""), edited: names.filter((_, i) => edited[i] !== null),
    };
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([JSON.stringify(record, null, 1)], { type: "application/json" }));
    a.download = "thresholds.json";
    document.body.appendChild(a); a.click(); a.remove();
  });

  // -------------------------------------------------------------- error gallery
  section("gallery", "Errors of the selected class", '<p class="note">' + esc(D.gallery_note || "") + '</p><div id="gallery-body"></div>');
  function thumb(row, score, kind, c) {
    const im = D.images[row] || {};
    const ev = im.evidence && im.evidence[c];  // an exam: the slice that carried this class's score
    const file = (ev && ev.caption) || im.caption || (im.file || "").split(/[\\/]/).pop();
    const src = ev ? ev.thumb : im.thumb;
    const labels = (im.labels || []).map((i) => names[i]).join(", ") || "(none)";
    const below = kind === "miss" && score < C[c].thr ? " (missed)" : "";
    const pic = src ? '<img src="' + src + '" alt="' + esc(file) + '">' : '<div class="missing">' + esc(im.error || "no thumbnail") + "</div>";
    const open = ev ? ' data-row="' + row + '" data-class="' + c + '" style="cursor:pointer"' : "";
    return '<div class="thumb ' + kind + (ev ? " exam" : "") + '"' + open + ' title="' + esc(im.file || "") + (ev ? " (click: every slice with its score)" : "") + '">' + pic + "<div><b>" + fmt(score, 3) + "</b>" + below + "</div><div>" + esc(file) + '</div><div class="note">true: ' + esc(labels) + "</div></div>";
  }
  function showSlices(row, c) {  // an exam's slices of the view that holds its evidence, each with its score for class c
    const im = D.images[row], ev = im.evidence[c], sl = im.slices[ev.view];
    const cells = sl.thumbs.map((t, k) => '<div class="slice' + (sl.index[k] === ev.slice ? " evidence" : "") + '"><img src="' + t + '" alt="slice ' + sl.index[k] + '"><div>' + sl.index[k] + ": <b>" + fmt(sl.scores[k][c], 3) + "</b>" + (sl.attention ? " a=" + fmt(sl.attention[k], 2) : "") + "</div></div>").join("");
    $("exam-slices").innerHTML = "<h3>" + esc((im.caption || "").split(":")[0] || im.file) + (ev.view ? ", " + esc(ev.view) : "") + ": each slice's score for " + esc(names[c]) + '</h3><p class="note">The score the exam would get were that slice its only one (the head on the slice\'s own features); the outlined slice carried the exam\'s score.</p><div class="slices">' + cells + "</div>";
  }
  function drawGallery() {
    const c = selected, g = D.gallery[c], body = $("gallery-body");
    if (!g) { body.innerHTML = "<p>No gallery for " + esc(names[c]) + (C[c].pos ? " (see the note above)." : " (no positives in this split).") + "</p>"; return; }
    const confused = g.confused.length
      ? g.confused.map((x) => esc(names[x[0]]) + " (" + x[1] + ")").join(", ")
      : "no other true labels";
    body.innerHTML =
      "<h3>Highest-scoring negatives of " + esc(names[c]) + " (false positives at threshold " + fmt(C[c].thr, 3) + ")</h3>" +
      '<div class="gallery" id="gallery-fp">' + (g.fp.map((x) => thumb(x[0], x[1], "fp", c)).join("") || "no negatives") + "</div>" +
      '<p id="confused-with"><b>Confused with</b> (true labels of ' + (g.confused_basis === "fp" ? "its " + g.confused_from + " false positives" : "its " + g.confused_from + " highest-scoring negatives; no false positive at this threshold") + "): " + confused + "</p>" +
      "<h3>Lowest-scoring positives of " + esc(names[c]) + "</h3>" +
      '<div class="gallery" id="gallery-miss">' + (g.miss.map((x) => thumb(x[0], x[1], "miss", c)).join("") || "no positives") + "</div>" +
      '<div id="exam-slices"></div>';
    body.querySelectorAll(".thumb.exam").forEach((el) => el.addEventListener("click", () => showSlices(+el.dataset.row, +el.dataset.class)));
  }

  // -------------------------------------------------------------- calibration
  const cal = D.calibration;
  // -------------------------------------------------------------- suspected label errors
  if (D.label_issues && D.label_issues.pairs.length) {
    // Every flag in the finder's rank, filtered by kind and class, a page at a time. Verdicts are
    // kept in the browser (localStorage, under the flag list's hash) so a reload or a second
    // sitting loses nothing, and the fixes can be downloaded at any time.
    const L = D.label_issues, P = L.pairs, PAGE = 40, VERDICTS = ["accept", "reject", "unsure"];
    const store = "mlcls-review:" + L.key;
    let decision = {};  // pair index -> "accept" | "reject" | "unsure"
    try { decision = JSON.parse(localStorage.getItem(store) || "{}") || {}; } catch (e) { decision = {}; }
    const save = () => { try { localStorage.setItem(store, JSON.stringify(decision)); } catch (e) { /* storage off: verdicts last until the page closes */ } };
    const left = L.total > P.length ? " The first " + P.length + " of " + L.total + " flags are here (the rest are in the file)." : "";
    const classOptions = [...new Set(P.map((q) => q.class))].sort((x, y) => x - y).map((c) => '<option value="' + c + '">' + esc(names[c]) + "</option>").join("");
    section("label-issues", "Suspected label errors",
      '<p class="note">From ' + esc(L.file) + ": " + P.length + " (sample, class) pairs whose given label the out-of-fold scores contradict, most likely errors first " +
      "(missing: labelled 0, scored high; extra: labelled 1, scored low)." + left + " Accept to flip the label, reject to keep it, unsure to make it unknown " +
      "(-1: left out of training and metrics). Verdicts are kept in this browser; download the fixes at any time and set <code>label_fixes: label_fixes.csv</code> " +
      "in the dataset's config (the annotation file stays as it is).</p>" +
      '<p>Show <select id="issues-kind"><option value="">every kind</option><option value="missing">missing</option><option value="extra">extra</option></select> ' +
      '<select id="issues-class"><option value="">every class</option>' + classOptions + "</select> " +
      '<select id="issues-state"><option value="">reviewed or not</option><option value="open">not reviewed yet</option></select> ' +
      '<button id="issues-prev">&lt; previous</button><span id="issues-page"></span> <button id="issues-next">next &gt;</button></p>' +
      '<p><button id="fixes-download">Download label fixes</button><button id="verdicts-download">Download verdicts</button> <span class="note" id="fixes-count"></span></p>' +
      '<div class="gallery review" id="issues-body"></div>');
    const body = $("issues-body");
    let page = 0;
    const shown = () => P.map((q, i) => i).filter((i) => (!$("issues-kind").value || P[i].kind === $("issues-kind").value) &&
      ($("issues-class").value === "" || P[i].class === +$("issues-class").value) && (!$("issues-state").value || !decision[i]));
    function card(i) {
      const q = P[i];
      const pic = q.thumb ? '<img src="' + q.thumb + '" alt="' + esc(q.caption) + '">' : '<div class="missing">' + esc(q.error || "no picture") + "</div>";
      return '<div class="thumb issue" id="issue-' + i + '" title="' + esc(q.path) + '">' + pic + "<div><b>" + esc(names[q.class]) + "</b>: given " + q.given +
        ", score " + fmt(q.score, 3) + "</div><div>" + esc(q.caption) + '</div><div class="note">' + esc(q.kind) + ", rank " + q.rank + "</div>" +
        '<div class="choices">' + VERDICTS.map((d) => '<button data-i="' + i + '" data-d="' + d + '"' + (decision[i] === d ? ' class="chosen"' : "") + ">" + d + "</button>").join("") + "</div></div>";
    }
    function render() {
      const rows = shown(), pages = Math.max(1, Math.ceil(rows.length / PAGE));
      page = Math.min(page, pages - 1);
      body.innerHTML = rows.slice(page * PAGE, (page + 1) * PAGE).map(card).join("") || '<p class="note">no flag to show</p>';
      $("issues-page").textContent = " page " + (page + 1) + " of " + pages + " (" + rows.length + " flags) ";
      $("issues-prev").disabled = page === 0;
      $("issues-next").disabled = page >= pages - 1;
      count();
    }
    function fixes() {  // label_fixes.csv rows: the label to use from now on
      return P.map((q, i) => (decision[i] === "accept" ? [q, 1 - q.given] : decision[i] === "unsure" ? [q, -1] : null)).filter((x) => x);
    }
    function count() {
      const n = Object.keys(decision).length;
      $("fixes-count").textContent = n + " of " + P.length + " reviewed; " + fixes().length + " fixes";
    }
    body.addEventListener("click", (ev) => {
      const b = ev.target.closest(".choices button");
      if (!b) return;
      const i = +b.dataset.i;
      if (decision[i] === b.dataset.d) delete decision[i]; else decision[i] = b.dataset.d;
      save();
      $("issue-" + i).querySelectorAll(".choices button").forEach((x) => x.classList.toggle("chosen", decision[i] === x.dataset.d));
      count();
    });
    ["issues-kind", "issues-class", "issues-state"].forEach((id) => $(id).addEventListener("change", () => { page = 0; render(); }));
    $("issues-prev").addEventListener("click", () => { page -= 1; render(); });
    $("issues-next").addEventListener("click", () => { page += 1; render(); });
    // a cell that starts like a formula is written with a leading ' (spreadsheets show it as text; mlcls reads it back without)
    const csvCell = (v) => { let t = String(v); if (/^[=+\-@\t\r]/.test(t) && typeof v === "string") t = "'" + t; return /[",\n]/.test(t) ? '"' + t.replace(/"/g, '""') + '"' : t; };
    function download(name, text) {
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
      a.download = name;
      document.body.appendChild(a); a.click(); a.remove();
    }
    $("fixes-download").addEventListener("click", () =>
      download("label_fixes.csv", "path,class,label\n" + fixes().map(([q, label]) => [q.path, names[q.class], label].map(csvCell).join(",") + "\n").join("")));
    $("verdicts-download").addEventListener("click", () =>
      download("label_verdicts.csv", "path,class,given_label,kind,rank,verdict\n" + P.map((q, i) => (decision[i] ? [q.path, names[q.class], q.given, q.kind, q.rank, decision[i]].map(csvCell).join(",") + "\n" : "")).join("")));
    render();
  }

  section("calibration", "Calibration",
    '<p class="note">Predicted probability (bins of width ' + fmt(1 / cal.bins, 3) + ") against how often the label is really there. On the dashed line the probabilities mean what they say. ECE: the mean gap, weighted by the number of labels in each bin.</p>" +
    '<div class="row">' + canvas("cal-all", 420, 320) + canvas("cal-class", 420, 320) + "</div>");
  function reliability(id, r, title) {
    const idx = r.n.map((n, i) => i).filter((i) => r.n[i] > 0);
    plot($(id), {
      title: title + "  ECE " + fmt(r.ece) + "%", xmin: 0, xmax: 1, ymin: 0, ymax: 1, diagonal: true,
      series: [{ x: idx.map((i) => i / cal.bins), y: idx.map((i) => r.freq[i]), kind: "bar", barWidth: 1 / cal.bins, color: "#2563eb", alpha: 0.6 },
        { x: idx.map((i) => r.conf[i]), y: idx.map((i) => r.freq[i]), kind: "dots", color: "#1d2330", r: 3 }],
      xlabel: "predicted probability", ylabel: "observed frequency",
    });
  }
  reliability("cal-all", cal.all, "all labels");
  function drawCalibration() { reliability("cal-class", cal.per_class[selected], names[selected]); }

  // -------------------------------------------------------------- training curves, AP vs frequency
  const cv = D.curves;
  section("training", "Training",
    (cv ? '<p class="note">from ' + esc(cv.source) + '</p><div class="row">' + canvas("curve-loss", 420, 260) + canvas("curve-lr", 420, 260) + canvas("curve-val", 420, 260) + "</div>"
      : '<p class="note">No training log (scalars.jsonl) was found beside the checkpoint, so there are no training curves.</p>') +
    '<div class="row">' + canvas("ap-freq", 640, 320) + "</div>");
  if (cv) {
    plot($("curve-loss"), { title: "training loss", series: [{ x: cv.train.map((r) => r[0]), y: cv.train.map((r) => r[1]) }], xlabel: "iteration" });
    plot($("curve-lr"), { title: "learning rate", series: [{ x: cv.train.map((r) => r[0]), y: cv.train.map((r) => r[2]), color: "#7a5af8" }], xlabel: "iteration", ymin: 0 });
    const ep = cv.val.map((r) => r.epoch);
    plot($("curve-val"), {
      title: "validation", xlabel: "epoch", ylabel: "%",
      series: [{ x: ep, y: cv.val.map((r) => r.mAP ?? null), color: "#2563eb" }, { x: ep, y: cv.val.map((r) => r.CF1 ?? null), color: "#f79009" }],
      legend: [{ color: "#2563eb", label: "mAP" }, { color: "#f79009", label: "CF1" }],
    });
  }
  const freqKey = hasTrain ? "train_pos" : "pos";
  const withAP = C.filter((c) => c.AP !== null && c[freqKey] > 0);
  const fq = withAP.map((c) => c[freqKey]);
  plot($("ap-freq"), {
    title: "AP per class against its " + (hasTrain ? "training" : "evaluation-split") + " frequency", xlog: true, ymin: 0, ymax: 100,
    xmin: Math.min(...fq, 1) * 0.8, xmax: Math.max(...fq, 1) * 1.25,
    series: [{ x: withAP.map((c) => c[freqKey]), y: withAP.map((c) => c.AP), kind: "dots", color: "#2563eb", r: 3 }],
    xlabel: "positives (" + (hasTrain ? "training set" : "this split") + ", log scale)", ylabel: "AP (%)",
  });

  const first = rows.slice().sort((a, b) => (a.AP ?? 1e9) - (b.AP ?? 1e9))[0];
  select(first ? first.index : 0);
  updateLive();
  document.body.dataset.ready = "1";

  // ---------------------------------------------------------------- compare two reports
  function renderCompare() {
    const A = D.meta.a, B = D.meta.b;
    document.title = "mlcls comparison";
    $("title").textContent = "mlcls: " + (A.name || "A") + " vs " + (B.name || "B");
    $("subtitle").textContent = "A: " + (A.checkpoint || "") + "  |  B: " + (B.checkpoint || "");
    const ks = ["mAP", "mAUROC", "CP", "CR", "CF1", "OP", "OR", "OF1"];
    const diffCls = (v) => (v === null || Math.abs(v) < 0.005 ? "" : v > 0 ? "good" : "bad");
    const unit = A.views || B.views ? "exams" : "images";  // a model of exams counts exams
    const sumCI = (D.paired && D.paired.summary_ci) || {};
    section("compare-summary", "Summary",
      '<table id="compare-summary-table"><thead><tr><th>metric (%)</th><th>A: ' + esc(A.name || "") + "</th><th>B: " + esc(B.name || "") + "</th><th>B - A</th></tr></thead><tbody>" +
      ks.map((k) => { const a = D.summary.a[k], b = D.summary.b[k], d = a === null || b === null ? null : b - a, iv = sumCI[k];
        return "<tr><td>" + k + "</td><td>" + fmt(a) + "</td><td>" + fmt(b) + '</td><td class="' + diffCls(d) + '">' + (d === null ? "n/a" : (d > 0 ? "+" : "") + fmt(d)) +
          (iv ? ' <span class="ci">[' + fmt(iv[0]) + ", " + fmt(iv[1]) + "]</span>" : "") + "</td></tr>"; }).join("") +
      "</tbody></table><p class=\"note\">A: " + esc(A.split || "") + ", " + A.num_images + " " + unit + "; B: " + esc(B.split || "") + ", " + B.num_images + " " + unit + "." +
      (Object.keys(sumCI).length ? " Brackets: the paired bootstrap interval of B - A." : "") + "</p>" +
      (A.num_images !== B.num_images || A.split !== B.split
        ? '<div class="warn" id="compare-warning">A and B were evaluated on different data (split or number of images differ): their differences mix the models with the data.</div>' : ""));
    const signed = (v) => (v === null ? "n/a" : Math.abs(v) < 0.005 ? "0.00" : (v > 0 ? "+" : "") + fmt(v));
    const rows = D.rows.map((r, i) => ({ ...r, index: i, absdAP: r.dAP === null ? null : Math.abs(r.dAP) }));
    const P = D.paired;
    const ci = (key) => (v, r) => signed(v) + (r[key] ? ' <span class="ci">[' + signed(r[key][0]) + ", " + signed(r[key][1]) + "]</span>" : "");
    const pairedCols = P ? [
      { key: "AUROC_a", label: "AUROC A", fmt: (v) => fmt(v) }, { key: "AUROC_b", label: "AUROC B", fmt: (v) => fmt(v) },
      { key: "dAUROC", label: "AUROC B-A", fmt: ci("dAUROC_ci"), cls: diffCls, title: "difference, with its paired bootstrap interval" },
      { key: "p_delong", label: "p (DeLong)", fmt: (v, r) => (v === null ? "n/a" : fmt(v, 4) + (r.significant ? (r.significant_bonferroni ? " **" : " *") : "") + (r.tests_disagree ? " &dagger;" : "") + (r.few ? " (few)" : "")), title: "two-sided p of DeLong's test for correlated ROC curves" },
    ] : [];
    section("compare-classes", "Per class",
      (P ? '<p class="note" id="paired-note">Both evaluations are of the same ' + A.num_images + " " + unit + " (checked). AUROC differences are tested with DeLong's test for correlated ROC curves (Sun & Xu's algorithm); intervals are " + fmt(P.level * 100, 0) + "% paired bootstrap intervals (" + P.resamples + " resamples drawn once for both models, seed " + P.seed + ") of B - A, each model at its own thresholds for F1. * p &lt; " + P.alpha + "; ** also below " + fmt(P.bonferroni, 4) + " (Bonferroni: " + P.classes_tested + " classes tested). The stars follow DeLong's test; &dagger;: the bootstrap interval of the AUROC difference says otherwise (it excludes 0 where DeLong's p does not reach " + P.alpha + ", or the reverse): read such a class as uncertain. (few): under 10 positives or negatives.</p>"
        : '<p class="note">No paired statistics: the two evaluations are not of the same samples.</p>') +
      '<p><input type="text" id="class-filter" placeholder="filter classes by name"> <span class="note" id="class-count"></span> <span class="note">Click a header to sort.</span></p><div id="class-table-wrap"></div>');
    const t = sortableTable($("class-table-wrap"), [
      { key: "name", label: "class", fmt: (v) => esc(v) }, { key: "pos_b", label: "positives" },
      ...pairedCols,
      { key: "AP_a", label: "AP A", fmt: (v) => fmt(v) }, { key: "AP_b", label: "AP B", fmt: (v) => fmt(v) }, { key: "dAP", label: "AP B-A", fmt: P ? ci("dAP_ci") : signed, cls: diffCls },
      { key: "F1_a", label: "F1 A", fmt: (v) => fmt(v) }, { key: "F1_b", label: "F1 B", fmt: (v) => fmt(v) }, { key: "dF1", label: "F1 B-A", fmt: P ? ci("dF1_ci") : signed, cls: diffCls },
      { key: "absdAP", label: "|AP change|", fmt: (v) => fmt(v) },
    ], rows, { id: "class-table", sortKey: "index", desc: false, count: (n) => ($("class-count").textContent = n + " of " + rows.length + " classes") });
    $("class-filter").addEventListener("input", (e) => t.setFilter(e.target.value));
    document.body.dataset.ready = "1";
  }
})();
