/* Operator panel: live dashboard and station page.
 *
 * Pages render their first state on the server; this script keeps them live by polling the
 * panel's JSON endpoints (no reload) and draws the charts with Chart.js (static/cpo/vendor).
 * Polling pauses while the tab is hidden and backs off when the server does not answer.
 */
(function () {
  "use strict";

  const STATUS_COLOURS = {
    Available: "#2e7d32",
    Online: "#2e7d32",
    Charging: "#1565c0",
    Occupied: "#1565c0",
    Preparing: "#6a1b9a",
    SuspendedEV: "#8e24aa",
    SuspendedEVSE: "#8e24aa",
    Finishing: "#6a1b9a",
    Reserved: "#ef6c00",
    Unavailable: "#757575",
    Faulted: "#c62828",
    Offline: "#37474f",
    Unknown: "#9e9e9e",
    queued: "#757575",
    sent: "#1565c0",
    accepted: "#2e7d32",
    rejected: "#ef6c00",
    failed: "#c62828",
    timed_out: "#c62828",
    expired: "#9e9e9e",
  };
  const colour = (status) => STATUS_COLOURS[status] || "#9e9e9e";

  /* The page's language: its words come from the page (json_script "panel-texts", translated
   * on the server), its numbers are written the language's way (a decimal comma in nl, de). */
  const LANGUAGE = document.documentElement.lang || "en";
  let texts = null;
  function text(key, fallback) {
    if (texts === null) texts = readJSON("panel-texts") || {};
    return texts[key] || fallback;
  }
  const NUMERIC = /^-?\d+(\.\d+)?$/;
  function num(value) {
    if (value === null || value === undefined) return value;
    const raw = String(value);
    if (!NUMERIC.test(raw)) return raw;
    const places = raw.includes(".") ? raw.split(".")[1].length : 0;
    return new Intl.NumberFormat(LANGUAGE, {
      minimumFractionDigits: places, maximumFractionDigits: places, useGrouping: false,
    }).format(Number(raw));
  }

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "dataset") Object.assign(node.dataset, value);
      else if (key === "style") node.style.cssText = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function badge(status, label) {
    return h("span", { class: "badge", dataset: { status: status } }, label || status);
  }

  function paintBadges(root) {
    root.querySelectorAll(".badge[data-status]").forEach((node) => {
      node.style.background = colour(node.dataset.status);
    });
  }

  function pick(data, path) {
    return path.split(".").reduce((value, key) => (value == null ? value : value[key]), data);
  }

  function duration(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const hours = Math.floor(s / 3600);
    const minutes = Math.floor((s % 3600) / 60);
    return hours ? `${hours} h ${minutes} min` : `${minutes} min`;
  }

  /* Translated by the page's "panel-texts" (keyed by the English text, translated on the
   * server), else by the admin's JavaScript catalog where the page loads it. */
  function t(english) {
    const own = text(english, null);
    if (typeof own === "string") return own;
    return typeof window.gettext === "function" ? window.gettext(english) : english;
  }
  function nt(one, many, n) {
    const forms = (text("plurals", null) || {})[one];
    const chosen = forms
      ? forms[n === 1 ? 0 : 1]
      : typeof window.ngettext === "function" ? window.ngettext(one, many, n) : n === 1 ? one : many;
    return chosen.replace("%(n)d", n);
  }

  /* The zone every time on the page is shown in (the site's, or the panel's): set from the
   * page's data-time-zone, so a browser elsewhere shows the same times as the server. */
  let TIME_ZONE = "UTC";

  function zoneParts(date, withSeconds) {
    const options = {
      timeZone: TIME_ZONE, year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit",
      minute: "2-digit", hourCycle: "h23", timeZoneName: "short",
    };
    if (withSeconds) options.second = "2-digit";
    const read = (locale) => {
      const parts = {};
      for (const part of new Intl.DateTimeFormat(locale, options).formatToParts(date)) {
        parts[part.type] = part.value;
      }
      return parts;
    };
    // The zone's abbreviation as the server's tz database writes it: British English knows
    // Europe's ("CET"), American English America's ("EST"); elsewhere an offset ("GMT+3").
    const parts = read("en-GB");
    if (/^GMT[+-]/.test(parts.timeZoneName)) {
      const american = read("en-US").timeZoneName;
      if (!/^GMT/.test(american)) parts.timeZoneName = american;
    }
    return parts;
  }

  /* The panel's one date format, as the server writes it: "2026-12-01 14:03 CET". */
  function when(iso, withSeconds) {
    if (!iso) return "—";
    const p = zoneParts(new Date(iso), withSeconds);
    return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}${withSeconds ? ":" + p.second : ""} ${p.timeZoneName}`;
  }

  /* How long ago, as people say it ("3 min ago"); the server's relative_text, in the browser. */
  function ago(iso) {
    if (!iso) return "—";
    let seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
    const future = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 45) return future ? t("in a moment") : t("just now");
    let text;
    if (seconds < 3600) {
      const n = Math.max(1, Math.round(seconds / 60));
      text = nt("%(n)d min", "%(n)d min", n);
    } else if (seconds < 48 * 3600) {
      const n = Math.round(seconds / 3600);
      text = nt("%(n)d hour", "%(n)d hours", n);
    } else {
      const n = Math.round(seconds / 86400);
      text = nt("%(n)d day", "%(n)d days", n);
    }
    return (future ? t("in %(time)s") : t("%(time)s ago")).replace("%(time)s", text);
  }

  /* A relative time with the absolute one (zone named) on hover, kept current. */
  function timeAgo(iso) {
    if (!iso) return "—";
    return h("time", { datetime: iso, title: `${when(iso, true)} (${TIME_ZONE})`, "data-relative": true }, ago(iso));
  }

  function timeAt(iso, withSeconds) {
    if (!iso) return "—";
    return h("time", { datetime: iso, title: `${when(iso, true)} (${TIME_ZONE})` }, when(iso, withSeconds));
  }

  function refreshRelativeTimes() {
    document.querySelectorAll("time[data-relative]").forEach((node) => {
      node.textContent = ago(node.getAttribute("datetime"));
    });
  }

  function money(list) {
    if (!list || !list.length) return num("0.00");
    return list.map((m) => `${num(m.amount)} ${m.currency}`).join(" · ");
  }

  async function getJSON(url) {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    const type = response.headers.get("Content-Type") || "";
    if (!response.ok || !type.includes("application/json")) {
      // A redirect to the login page ends here too: the session expired.
      throw new Error(`${url}: ${response.status}`);
    }
    return response.json();
  }

  function readJSON(id) {
    const node = document.getElementById(id);
    return node ? JSON.parse(node.textContent) : null;
  }

  /* Run `task` now and then every `interval` ms; slower after failures, paused when hidden. */
  function poll(task, interval, onState) {
    let failures = 0;
    async function tick() {
      if (!document.hidden) {
        try {
          await task();
          failures = 0;
          onState && onState(true);
        } catch (error) {
          failures += 1;
          onState && onState(false, error);
        }
      }
      window.setTimeout(tick, interval * Math.min(1 + failures, 6));
    }
    window.setTimeout(tick, interval);
  }

  function liveState(ok) {
    const label = document.getElementById("panel-updated");
    document.body.classList.toggle("panel-stale", !ok);
    if (label) {
      label.textContent = ok
        ? `${text("updated", "Live: updated")} ${when(new Date().toISOString(), true)}`
        : text("stale", "Not updating: the server does not answer (or your login expired)");
    }
  }

  /* --- charts ------------------------------------------------------------------------------ */

  const PALETTE = ["#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#00838f", "#c62828", "#5d4037"];
  const charts = {};
  const hasChart = () => typeof window.Chart === "function";

  function drawChart(id, config) {
    const canvas = document.getElementById(id);
    if (!canvas || !hasChart()) return null;
    if (charts[id]) {
      charts[id].data = config.data;
      if (config.options) charts[id].options = config.options;
      charts[id].update("none");
      return charts[id];
    }
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false }, config.options);
    charts[id] = new window.Chart(canvas, config);
    return charts[id];
  }

  function timeTick(value) {
    const p = zoneParts(new Date(value), false);
    return `${p.month}-${p.day} ${p.hour}:${p.minute}`;
  }

  function energyChart(data) {
    if (!data) return;
    drawChart("chart-energy", {
      type: "bar",
      data: {
        labels: data.labels.map((day) => day.slice(5)),
        datasets: data.datasets.map((set, index) => ({
          label: set.label, data: set.data, backgroundColor: PALETTE[index % PALETTE.length],
        })),
      },
      options: {
        animation: false,
        scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "kWh" } } },
      },
    });
  }

  function revenueChart(data) {
    if (!data) return;
    drawChart("chart-revenue", {
      type: "bar",
      data: {
        labels: data.labels,
        datasets: data.datasets.map((set, index) => ({
          label: set.label, data: set.data, backgroundColor: PALETTE[(index + 2) % PALETTE.length],
        })),
      },
      options: { animation: false, scales: { y: { beginAtZero: true } } },
    });
  }

  function connectorsChart(connectors) {
    const labels = Object.keys(connectors || {});
    drawChart("chart-connectors", {
      type: "doughnut",
      data: {
        labels: labels,
        datasets: [{ data: labels.map((k) => connectors[k]), backgroundColor: labels.map(colour) }],
      },
      options: { animation: false, plugins: { legend: { position: "right" } } },
    });
  }

  function curveChart(id, curve) {
    return drawChart(id, {
      type: "line",
      data: {
        datasets: [
          { label: "Power (kW)", data: curve.power, yAxisID: "power", borderColor: "#1565c0",
            backgroundColor: "#1565c0", pointRadius: 0, stepped: true },
          { label: "Energy (kWh)", data: curve.energy, yAxisID: "energy", borderColor: "#2e7d32",
            backgroundColor: "#2e7d32", pointRadius: 0 },
        ],
      },
      options: {
        animation: false,
        parsing: false,
        scales: {
          x: { type: "linear", ticks: { callback: timeTick, maxTicksLimit: 8 } },
          power: { position: "left", beginAtZero: true, title: { display: true, text: "kW" } },
          energy: { position: "right", beginAtZero: true, title: { display: true, text: "kWh" },
                    grid: { drawOnChartArea: false } },
        },
        plugins: { tooltip: { callbacks: { title: (items) => items.length ? when(new Date(items[0].parsed.x).toISOString(), true) : "" } } },
      },
    });
  }

  function timelineChart(timeline) {
    const statuses = [...new Set(timeline.segments.map((s) => s.status))];
    drawChart("chart-timeline", {
      type: "bar",
      data: {
        labels: timeline.rows,
        datasets: statuses.map((status) => ({
          label: status,
          data: timeline.segments
            .filter((s) => s.status === status)
            .map((s) => ({ x: [s.from, s.to], y: s.row })),
          backgroundColor: colour(status),
          grouped: false,
          barPercentage: 0.8,
          categoryPercentage: 0.9,
        })),
      },
      options: {
        animation: false,
        indexAxis: "y",
        scales: {
          x: { type: "linear", min: timeline.start, max: timeline.end,
               ticks: { callback: timeTick, maxTicksLimit: 8 } },
          y: { type: "category", labels: timeline.rows },
        },
        plugins: {
          tooltip: {
            callbacks: {
              label: (item) => {
                const [from, to] = item.raw.x;
                return `${item.dataset.label}: ${when(new Date(from).toISOString())} → ${when(new Date(to).toISOString())}`;
              },
            },
          },
        },
      },
    });
  }

  /* --- dashboard ----------------------------------------------------------------------------- */

  function renderDashboard(root, data) {
    root.querySelectorAll("[data-field]").forEach((node) => {
      const value = pick(data, node.dataset.field);
      if (value !== undefined && value !== null) {
        node.textContent = "number" in node.dataset ? num(value) : value;
      }
    });
    root.querySelectorAll("[data-money]").forEach((node) => {
      node.textContent = money(pick(data, node.dataset.money));
    });

    const chips = document.getElementById("connector-statuses");
    if (chips) {
      const entries = Object.entries(data.connectors);
      chips.replaceChildren(
        ...(entries.length
          ? entries.map(([status, count]) => h("li", {}, badge(status), " ", count))
          : [h("li", { class: "quiet" }, text("no_connectors", "No connectors yet."))])
      );
      connectorsChart(data.connectors);
    }

    const alerts = document.getElementById("alert-list");
    if (alerts) {
      alerts.replaceChildren(
        ...(data.alerts.items.length
          ? data.alerts.items.map((alert) =>
              h("li", { class: `alert alert-${alert.severity}`, dataset: { kind: alert.kind } },
                alert.url ? h("a", { href: alert.url }, alert.title) : alert.title,
                h("span", { class: "quiet" }, ` — ${alert.detail}`)))
          : [h("li", { class: "quiet" }, text("no_alerts", "No alerts. The network is healthy."))])
      );
    }

    const table = document.querySelector("#live-sessions tbody");
    if (table) {
      const rows = data.live_sessions.items.map((s) =>
        h("tr", { dataset: { session: s.id } },
          h("td", {}, s.station_url ? h("a", { href: s.station_url }, s.station) : s.station),
          h("td", {}, s.site),
          h("td", {}, s.connector),
          h("td", {}, s.id_tag),
          h("td", {}, duration(s.duration_s)),
          h("td", {}, s.power_kw === null ? "—" : `${num(s.power_kw)} kW`),
          h("td", {}, `${num(s.energy_kwh)} kWh`),
          h("td", {}, s.soc === null ? "—" : `${num(s.soc)} %`),
          h("td", {}, s.cost === null ? "—" : `${num(s.cost)} ${s.currency}`),
        ));
      const more = data.live_sessions.total - data.live_sessions.items.length;
      if (more > 0) rows.push(h("tr", {}, h("td", { colspan: 9, class: "quiet" }, text("more", "and %s more").replace("%s", more))));
      if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 9, class: "quiet" }, text("no_sessions", "No session is charging."))));
      table.replaceChildren(...rows);
      table.querySelectorAll("tr[data-session]").forEach((row) => {
        row.addEventListener("click", (event) => {
          if (event.target.closest("a")) return;
          const session = data.live_sessions.items.find((s) => String(s.id) === row.dataset.session);
          if (session) showLiveCurve(session);
        });
      });
    }
    paintBadges(root);
  }

  async function showLiveCurve(session) {
    const box = document.getElementById("live-curve-box");
    if (!box) return;
    const curve = await getJSON(session.curve_url);
    box.hidden = false;
    document.getElementById("live-curve-title").textContent =
      `${curve.station} ${curve.connector}: ${curve.energy_kwh} kWh`;
    curveChart("chart-live-curve", curve);
  }

  function initDashboard(root) {
    const refresh = Number(root.dataset.refresh) || 5000;
    TIME_ZONE = root.dataset.timeZone || TIME_ZONE;
    const first = readJSON("panel-summary");
    if (first) renderDashboard(root, first);
    const chartData = readJSON("panel-charts") || {};
    energyChart(chartData.energy);
    revenueChart(chartData.revenue);
    poll(async () => renderDashboard(root, await getJSON(root.dataset.url)), refresh, liveState);
    if (chartData.energy || chartData.revenue) {
      poll(async () => {
        const data = await getJSON(root.dataset.chartsUrl);
        energyChart(data.energy);
        revenueChart(data.revenue);
      }, Math.max(refresh * 12, 60000));
    }
  }

  /* --- station page -------------------------------------------------------------------------- */

  function commandForm(root, verb, fields, label, extraClass) {
    const token = document.querySelector("#station-commands-buttons input[name=csrfmiddlewaretoken]");
    const form = h("form", { method: "post", action: root.dataset.commandUrl, class: "command-form inline" },
      token ? h("input", { type: "hidden", name: "csrfmiddlewaretoken", value: token.value }) : null,
      h("input", { type: "hidden", name: "verb", value: verb }),
      ...Object.entries(fields).map(([name, value]) => h("input", { type: "hidden", name: name, value: value })),
      h("button", { type: "submit", class: `button small ${extraClass || ""}`, dataset: { command: `${verb}` } }, label));
    bindCommandForm(root, form);
    return form;
  }

  function renderStation(root, data) {
    const online = document.getElementById("station-online");
    if (online) {
      online.dataset.status = data.is_online ? "Online" : "Offline";
      online.textContent = data.is_online ? t("Online") : t("Offline");
    }
    root.querySelectorAll("[data-live-ago]").forEach((node) => {
      node.replaceChildren(timeAgo(data[node.dataset.liveAgo]));
    });
    const canCommand = !!document.getElementById("station-commands-buttons");
    const connectors = document.querySelector("#station-connectors tbody");
    if (connectors) {
      connectors.replaceChildren(...data.connectors.map((c) => {
        const actions = [];
        if (canCommand) {
          if (c.session && root.dataset.canStop) {
            actions.push(commandForm(root, "remote_stop", { transaction_id: c.session.transaction_id || "" }, t("Stop")));
          }
          if (root.dataset.canUnlock) {
            actions.push(commandForm(root, "unlock_connector", { evse_id: c.evse_id, connector_id: c.connector_id }, t("Unlock")));
          }
          // Support has the driver-help commands above only; availability is the operator's.
          if (root.dataset.canAny && c.reported_status === "Unavailable") {
            actions.push(commandForm(root, "change_availability", { evse_id: c.evse_id, connector_id: c.connector_id, operative: "true" }, t("Make available")));
          } else if (root.dataset.canAny) {
            actions.push(commandForm(root, "change_availability", { evse_id: c.evse_id, connector_id: c.connector_id, operative: "false" }, t("Make unavailable")));
          }
        }
        // A fault says what the station said about it: its code, its text, the vendor's code.
        const fault = [
          c.error_code ? h("span", { class: "fault-code" }, c.error_code) : null,
          c.info ? h("span", { class: "fault-info" }, c.info) : null,
          c.vendor_error_code
            ? h("span", { class: "fault-vendor" }, `${t("vendor code")} ${c.vendor_error_code}${c.vendor_id ? ` (${c.vendor_id})` : ""}`)
            : null,
        ].filter(Boolean);
        const s = c.session;
        const sessionCell = s
          ? h("span", { class: "live-session" },
              s.url ? h("a", { href: s.url }, s.id_tag || t("session")) : s.id_tag,
              ` · ${duration(s.duration_s)} · ${s.energy_kwh} kWh`,
              s.power_kw === null ? "" : ` · ${s.power_kw} kW`,
              s.cost === null ? "" : h("strong", { class: "live-cost" }, ` · ${s.cost} ${s.currency}`))
          : "—";
        return h("tr", { dataset: { connector: c.label } },
          h("td", {}, c.label),
          h("td", {}, badge(c.status), fault.length ? h("div", { class: "fault" }, ...fault) : null),
          h("td", {}, timeAgo(c.status_at)),
          h("td", {}, `${c.standard}, ${c.max_power_kw} kW`),
          h("td", {}, sessionCell),
          canCommand ? h("td", { class: "actions" }, actions) : null);
      }));
    }
    const commands = document.querySelector("#station-commands tbody");
    if (commands) {
      const rows = data.commands.map((cmd) =>
        h("tr", { dataset: { command: cmd.id, status: cmd.status } },
          h("td", {}, cmd.id),
          h("td", {}, timeAt(cmd.created_at, true)),
          h("td", {}, cmd.action),
          h("td", {}, cmd.requested_by || cmd.origin),
          h("td", {}, badge(cmd.status, cmd.status_label)),
          h("td", { class: "command-result" },
            cmd.error || (cmd.response ? resultText(cmd.response) : cmd.final ? "" : t("waiting…")))));
      if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: 6, class: "quiet" }, t("No commands sent yet."))));
      commands.replaceChildren(...rows);
    }
    paintBadges(root);
  }

  function resultText(response) {
    if (response && typeof response === "object" && !Array.isArray(response)) {
      return Object.entries(response)
        .map(([key, value]) => `${key}: ${typeof value === "object" ? JSON.stringify(value) : value}`)
        .join(", ");
    }
    return JSON.stringify(response);
  }

  /* Send a command form with fetch. Bound once per form (the connector rows' forms are bound
   * when they are made, the page's own forms at start), and one request at a time per form:
   * a form bound twice sent each command twice. */
  function bindCommandForm(root, form, after) {
    if (form.dataset.bound) return;
    form.dataset.bound = "true";
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (form.dataset.sending) return;
      if (form.dataset.confirm && !window.confirm(form.dataset.confirm)) return;
      const flash = document.getElementById("command-flash");
      const button = form.querySelector("button");
      form.dataset.sending = "true";
      if (button) button.disabled = true;
      try {
        const response = await fetch(form.action, {
          method: "POST",
          body: new FormData(form),
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        const body = await response.json().catch(() => ({}));
        if (flash) {
          flash.className = `panel-flash ${response.ok ? "ok" : "error"}`;
          flash.textContent = response.ok
            ? t("%(action)s queued (#%(id)s); its result appears below.")
              .replace("%(action)s", body.action).replace("%(id)s", body.id)
            : t("Not sent: %(error)s").replace("%(error)s", body.error || response.status);
        }
        await (after ? after(response.ok) : refreshStation(root));
      } finally {
        delete form.dataset.sending;
        if (button) button.disabled = false;
      }
    });
  }

  async function refreshStation(root) {
    renderStation(root, await getJSON(root.dataset.liveUrl));
  }

  async function loadTimeline(root) {
    const hours = (document.getElementById("timeline-hours") || {}).value || 24;
    timelineChart(await getJSON(`${root.dataset.timelineUrl}?hours=${hours}`));
  }

  function initStation(root) {
    const refresh = Number(root.dataset.refresh) || 5000;
    TIME_ZONE = root.dataset.timeZone || TIME_ZONE;
    const first = readJSON("station-live");
    if (first) renderStation(root, first);
    document.querySelectorAll("#station-commands-buttons form.command-form")
      .forEach((form) => bindCommandForm(root, form));
    poll(() => refreshStation(root), refresh, liveState);
    loadTimeline(root).catch(() => liveState(false));
    poll(() => loadTimeline(root), Math.max(refresh * 6, 30000));
    const hours = document.getElementById("timeline-hours");
    if (hours) hours.addEventListener("change", () => loadTimeline(root));
    // A folded chart has no size: draw it again when its section opens.
    const timeline = document.getElementById("section-timeline");
    if (timeline) timeline.addEventListener("toggle", () => timeline.open && loadTimeline(root));
  }

  /* --- session page -------------------------------------------------------------------------- */

  async function loadSessionCurve(root) {
    const curve = await getJSON(root.dataset.curveUrl);
    const note = document.getElementById("session-curve-note");
    if (note && !(curve.power.length || curve.energy.length)) note.hidden = false;
    curveChart("chart-session", curve);
    return curve;
  }

  function initSession(root) {
    TIME_ZONE = root.dataset.timeZone || TIME_ZONE;
    const refresh = Number(root.dataset.refresh) || 5000;
    loadSessionCurve(root).catch(() => liveState(false));
    // An active session's curve grows: follow it while the page is open.
    if (root.dataset.active) poll(() => loadSessionCurve(root), Math.max(refresh * 3, 15000), liveState);
    const stop = document.getElementById("session-stop-form");
    if (stop) {
      bindCommandForm(root, stop, async (ok) => {
        if (ok) stop.querySelector("button").hidden = true;
      });
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    paintBadges(document);
    const dashboard = document.getElementById("panel-dashboard");
    if (dashboard) initDashboard(dashboard);
    const station = document.getElementById("station-panel");
    if (station) initStation(station);
    const session = document.getElementById("session-panel");
    if (session) initSession(session);
    window.setInterval(refreshRelativeTimes, 30000);
  });
})();
