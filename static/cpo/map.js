/* The map of sites (Leaflet, static/vendor/leaflet): one circle per site with coordinates,
 * coloured by the worst state of its stations, and a popup listing them with links.
 *
 * The data is the page's own (json_script); tiles come from MAP_TILE_URL when it is set and
 * reachable. Without tiles the markers still show on a blank map, and the list beside the map
 * has the same sites, states and links.
 */
(function () {
  "use strict";

  const COLOURS = {
    available: "#2e7d32",
    charging: "#1565c0",
    unavailable: "#757575",
    faulted: "#c62828",
    offline: "#37474f",
    empty: "#9e9e9e",
  };

  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function popup(site) {
    return h("div", { class: "site-popup", "data-site": site.id },
      h("strong", {}, site.url ? h("a", { href: site.url }, site.name) : site.name),
      " ",
      h("span", { class: "badge", "data-map-status": site.status }, site.status_label),
      site.address ? h("div", { class: "quiet" }, site.address) : null,
      site.stations.length
        ? h("ul", {}, site.stations.map((station) =>
            h("li", {},
              h("a", { href: station.url, class: "popup-station" }, station.identity), " ",
              h("span", { class: "badge", "data-map-status": station.status }, station.status_label))))
        : null);
  }

  function init(container) {
    const config = JSON.parse(document.getElementById("sites-map-data").textContent);
    if (!config.sites.length || typeof window.L !== "object") return;
    const map = window.L.map(container, { scrollWheelZoom: false });
    if (config.tile_url) {
      window.L.tileLayer(config.tile_url, { maxZoom: 19, attribution: config.attribution }).addTo(map);
    }
    // The view first: a marker's SVG path exists only once the map has one.
    const bounds = window.L.latLngBounds(config.sites.map((site) => [site.lat, site.lng]));
    if (config.sites.length === 1) map.setView(bounds.getCenter(), 14);
    else map.fitBounds(bounds, { padding: [30, 30], maxZoom: 15 });
    config.sites.forEach((site) => {
      const marker = window.L.circleMarker([site.lat, site.lng], {
        radius: 9,
        weight: 2,
        color: "#fff",
        fillColor: COLOURS[site.status] || COLOURS.empty,
        fillOpacity: 0.95,
        className: `site-marker site-marker-${site.status}`,
      });
      marker.bindPopup(() => popup(site));
      marker.bindTooltip(site.name);
      marker.addTo(map);
      // Tests and the list find a site's marker by its id.
      marker.getElement().setAttribute("data-site", site.id);
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const container = document.getElementById("sites-map");
    if (container) init(container);
  });
})();
