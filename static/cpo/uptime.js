/* The uptime charts of the station and site pages: per EVSE, its uptime per day (contract
 * SLA: approved excluded time left out), from the panel's uptime.json. A canvas with
 * data-uptime-url draws itself; once drawn it carries data-drawn (the number of EVSEs). */
(function () {
  "use strict";

  const PALETTE = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#c62828", "#5d4037"];

  async function draw(canvas) {
    if (typeof window.Chart !== "function") return;
    const answer = await fetch(canvas.dataset.uptimeUrl, {
      credentials: "same-origin", headers: { Accept: "application/json" },
    });
    if (!answer.ok) return;
    const data = await answer.json();
    new window.Chart(canvas, {
      type: "line",
      data: {
        labels: data.days.map((day) => day.slice(5)),
        datasets: data.series.map((set, index) => ({
          label: set.label,
          data: set.uptime_pct,
          borderColor: PALETTE[index % PALETTE.length],
          backgroundColor: PALETTE[index % PALETTE.length],
          spanGaps: false,
          tension: 0,
        })),
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } },
      },
    });
    canvas.dataset.drawn = String(data.series.length);
  }

  function start() {
    document.querySelectorAll("canvas[data-uptime-url]").forEach((canvas) => draw(canvas));
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
