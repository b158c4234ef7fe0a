/* tinychart: a very small SVG chart library written for the tokenward console (MIT licence).
 * TinyChart.lines(el, points, series): a stacked-area-free multi-line chart over time.
 *   points: [{t: <unix seconds>, <name>: <number>, ...}], series: [{key, label, color}]
 * TinyChart.bars(el, rows): horizontal bars; rows: [{label, value}]
 * Everything is built with DOM calls (no innerHTML), so labels are never parsed as markup. */
(function (global) {
  "use strict";
  var NS = "http://www.w3.org/2000/svg";

  function node(name, attrs, parent) {
    var el = document.createElementNS(NS, name);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, String(attrs[k])); });
    if (parent) parent.appendChild(el);
    return el;
  }

  function text(parent, x, y, value, anchor) {
    var t = node("text", {x: x, y: y, "text-anchor": anchor || "start"}, parent);
    t.textContent = value;
    return t;
  }

  function clear(el) { while (el.firstChild) el.removeChild(el.firstChild); }

  function niceMax(value, ticks) {
    var raw = Math.max(value, 1) / ticks;
    var power = Math.pow(10, Math.floor(Math.log10(raw)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (steps[i] * power >= raw) return Math.max(1, steps[i] * power) * ticks;
    }
    return 10 * power * ticks;
  }

  function clock(t) {
    var d = new Date(t * 1000);
    return String(d.getHours()).padStart(2, "0") + ":" + String(d.getMinutes()).padStart(2, "0");
  }

  function lines(el, points, series) {
    clear(el);
    var W = 720, H = 220, L = 44, R = 10, T = 10, B = 26;
    var svg = node("svg", {viewBox: "0 0 " + W + " " + H, role: "img"}, el);
    var max = 0;
    points.forEach(function (p) { series.forEach(function (s) { max = Math.max(max, p[s.key] || 0); }); });
    max = niceMax(max, 4);
    var n = Math.max(points.length - 1, 1);
    var x = function (i) { return L + (W - L - R) * i / n; };
    var y = function (v) { return T + (H - T - B) * (1 - v / max); };
    for (var g = 0; g <= 4; g++) {
      var v = max * g / 4;
      node("line", {x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e8eaef"}, svg);
      text(svg, L - 6, y(v) + 4, String(Math.round(v)), "end");
    }
    var every = Math.max(1, Math.ceil(points.length / 8));
    points.forEach(function (p, i) { if (i % every === 0) text(svg, x(i), H - 8, clock(p.t), "middle"); });
    series.forEach(function (s) {
      var d = points.map(function (p, i) { return (i ? "L" : "M") + x(i).toFixed(1) + " " + y(p[s.key] || 0).toFixed(1); }).join(" ");
      node("path", {d: d, fill: "none", stroke: s.color, "stroke-width": 2, "data-series": s.key}, svg);
    });
    var legend = document.createElement("div");
    legend.className = "legend";
    series.forEach(function (s) {
      var item = document.createElement("span");
      var swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(s.label));
      legend.appendChild(item);
    });
    el.appendChild(legend);
    return svg;
  }

  function bars(el, rows, color) {
    clear(el);
    if (!rows.length) { var p = document.createElement("p"); p.className = "note"; p.textContent = "Nothing yet."; el.appendChild(p); return null; }
    var W = 260, row = 24, H = rows.length * row + 4, labelW = 112;
    var svg = node("svg", {viewBox: "0 0 " + W + " " + H, role: "img"}, el);
    var max = Math.max.apply(null, rows.map(function (r) { return r.value; })) || 1;
    rows.forEach(function (r, i) {
      var label = r.label.length > 17 ? r.label.slice(0, 16) + "…" : r.label;
      var t = text(svg, 0, i * row + 15, label);
      node("title", {}, t).textContent = r.label;
      var w = Math.max(2, (W - labelW - 34) * r.value / max);
      node("rect", {x: labelW, y: i * row + 4, width: w.toFixed(1), height: row - 8, rx: 3, fill: color || "#2456d6"}, svg);
      text(svg, labelW + w + 4, i * row + 15, String(r.value));
    });
    return svg;
  }

  global.TinyChart = {lines: lines, bars: bars};
})(window);
