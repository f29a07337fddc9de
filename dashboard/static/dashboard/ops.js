// The console's charts: what a slot holds, shown where the pointer is. The numbers come once
// per stats partial as JSON (dashboard/charts.py, slot_data); the SVG carries no per-slot
// targets. Without JavaScript the charts and tiles still say everything but the slot details.
(function () {
  "use strict";
  const OUTCOMES = ["succeeded", "failed", "cancelled", "retried"];
  let tip = null;

  // The same units as the duration filter (dashboard/templatetags/parroter.py).
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    if (seconds < 1) return Math.round(seconds * 1000) + " ms";
    if (seconds < 10) return seconds.toFixed(1) + " s";
    if (seconds < 60) return Math.round(seconds) + " s";
    const minutes = Math.floor(seconds / 60), secs = Math.floor(seconds % 60);
    if (minutes < 60) return minutes < 10 && secs ? minutes + " min " + secs + " s" : minutes + " min";
    const hours = Math.floor(minutes / 60), rest = minutes % 60;
    return rest ? hours + " h " + rest + " min" : hours + " h";
  }

  function percent(fraction) {
    return fraction < 0.1 ? (fraction * 100).toFixed(1) + " %" : Math.round(fraction * 100) + " %";
  }

  function describe(chart, row) {
    const counts = OUTCOMES.map((_, i) => row[i] || 0);
    if (chart === "throughput") {
      const parts = OUTCOMES.map((name, i) => counts[i] + " " + name).filter((_, i) => counts[i]);
      return parts.join(", ") || "nothing finished";
    }
    if (chart === "failures") {
      const done = counts[0] + counts[1];
      return done ? percent(counts[1] / done) + " failed (" + counts[1] + " of " + done + ")" : "nothing finished";
    }
    const at = chart === "wait" ? 4 : 6;
    if (row.length <= at || row[at] === null) return "no durations";
    return "p50 " + duration(row[at] / 1000) + ", p95 " + duration(row[at + 1] / 1000);
  }

  function slotData(svg) {
    const block = svg.closest("#ops-stats");
    const script = block && block.querySelector("script.slot-data");
    if (!script) return null;
    if (script._parsed === undefined) script._parsed = JSON.parse(script.textContent);
    return script._parsed;
  }

  function hide() {
    if (tip) tip.hidden = true;
    document.querySelectorAll(".chart rect.cursor.on").forEach((r) => r.classList.remove("on"));
  }

  function show(event) {
    const svg = event.target.closest && event.target.closest(".chart svg");
    if (!svg) return hide();
    const data = slotData(svg);
    const slots = Number(svg.dataset.slots);
    const left = Number(svg.dataset.left), plot = Number(svg.dataset.plotWidth);
    const box = svg.getBoundingClientRect();
    const x = ((event.clientX - box.left) * svg.viewBox.baseVal.width) / box.width;
    const index = Math.floor(((x - left) / plot) * slots);
    if (!data || !slots || index < 0 || index >= slots) return hide();
    const cursor = svg.querySelector("rect.cursor");
    cursor.setAttribute("x", (left + (index * plot) / slots).toFixed(1));
    cursor.setAttribute("width", (plot / slots).toFixed(2));
    cursor.classList.add("on");
    if (!tip) {
      tip = document.createElement("div");
      tip.className = "chart-tip";
      tip.setAttribute("role", "status");
      document.body.appendChild(tip);
    }
    const chart = svg.closest(".chart").dataset.chart;
    tip.textContent = data.labels[index] + ": " + describe(chart, data.rows[index] || []);
    tip.hidden = false;
    const width = tip.offsetWidth;
    const room = document.documentElement.clientWidth - width - 8;
    tip.style.left = Math.max(8, Math.min(event.pageX + 12, room + window.scrollX)) + "px";
    tip.style.top = event.pageY + 16 + "px";
  }

  document.addEventListener("pointermove", show);
  document.addEventListener("pointerdown", show);
  document.addEventListener("htmx:beforeSwap", hide);
})();
