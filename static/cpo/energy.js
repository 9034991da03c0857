/* The site energy page: the chosen node's counted load per phase over the last hour,
   against its limit (Chart.js, vendored). */
(function () {
  "use strict";
  const config = JSON.parse(document.getElementById("energy-chart-data").textContent);
  const canvas = document.getElementById("energy-chart");
  const select = document.getElementById("energy-chart-node");
  if (!canvas || !select || typeof Chart === "undefined") return;
  let chart = null;
  const colours = { L1: "#b5651d", L2: "#222222", L3: "#7a7a7a", limit: "#c0392b" };

  function draw(series) {
    const labels = series.at.map((at) => new Date(at).toLocaleTimeString());
    const datasets = ["L1", "L2", "L3"].map((phase) => ({
      label: phase, data: series[phase], borderColor: colours[phase], pointRadius: 0, tension: 0,
      stepped: true,
    }));
    datasets.push({
      label: config.labels.limit, data: series.limit, borderColor: colours.limit,
      borderDash: [6, 4], pointRadius: 0, stepped: true,
    });
    if (chart) chart.destroy();
    chart = new Chart(canvas, {
      type: "line",
      data: { labels, datasets },
      options: { animation: false, scales: { y: { beginAtZero: true, title: { display: true, text: "A" } } } },
    });
    canvas.dataset.points = String(series.at.length);
  }

  function load() {
    fetch(config.url + "?node=" + encodeURIComponent(select.value), { credentials: "same-origin" })
      .then((response) => response.json())
      .then(draw);
  }
  select.addEventListener("change", load);
  if (select.value) load();
})();
