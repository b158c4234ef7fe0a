/* The console's behaviour: local times, confirmation prompts, and the live usage dashboard. */
(function () {
  "use strict";

  function localTimes(root) {
    root.querySelectorAll("time[data-ts]").forEach(function (el) {
      var d = new Date(Number(el.getAttribute("data-ts")) * 1000);
      el.textContent = d.toLocaleString();
      el.setAttribute("datetime", d.toISOString());
    });
  }

  function confirmations() {
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.form.addEventListener("submit", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) event.preventDefault();
      });
    });
  }

  function rows(list, withSub) {
    return list.map(function (r) {
      var label = r.key;
      if (withSub && r.sub) label = r.key.slice(0, 6) + "… " + r.sub;
      return {label: label, value: r.count};
    });
  }

  function draw(usage) {
    var charts = window.TinyChart;
    charts.lines(document.getElementById("chart-requests"), usage.series, [
      {key: "allow", label: "allowed", color: "#2456d6"},
      {key: "deny", label: "denied", color: "#c0362c"}
    ]);
    charts.bars(document.getElementById("chart-tokens"), rows(usage.top_tokens, true));
    charts.bars(document.getElementById("chart-subjects"), rows(usage.top_subjects));
    charts.bars(document.getElementById("chart-ips"), rows(usage.top_ips), "#5b6372");
    charts.bars(document.getElementById("chart-reasons"), rows(usage.deny_reasons), "#c0362c");
    var totals = document.getElementById("totals");
    if (totals) totals.textContent = usage.requests + " requests, " + usage.denied + " denied";
  }

  function dashboard() {
    var data = document.getElementById("usage-data");
    if (!data || !window.TinyChart) return;
    draw(JSON.parse(data.textContent));
    document.body.setAttribute("data-charts", "drawn");
    window.setInterval(function () {
      fetch("/admin/usage.json", {credentials: "same-origin", cache: "no-store"})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (body) {
          if (!body) return;
          draw(body.usage);
          var dropped = document.getElementById("dropped");
          if (dropped) dropped.textContent = String(body.health.dropped);
        })
        .catch(function () {});
    }, 5000);
  }

  localTimes(document);
  confirmations();
  dashboard();
})();
