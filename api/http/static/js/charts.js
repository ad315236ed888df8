// Charts on uPlot (vendored, see ../vendor/uplot/README.md): stacked bars and lines, sized to
// their container, redrawn in the theme's colours when the theme changes.
import uPlot from "../vendor/uplot/uPlot.esm.js";

// uPlot's stylesheet is added here, not in the page's <head>: the charts come after the first
// paint, so their CSS must not hold it up.
const uPlotStyles = Object.assign(document.createElement("link"), {
  rel: "stylesheet", href: new URL("../vendor/uplot/uPlot.min.css", import.meta.url).href,
});
document.head.append(uPlotStyles);

export const STATE_ORDER = ["COMPLETED", "FAILED", "CRASHED", "CANCELLED", "CANCELLING", "RUNNING", "PENDING",
  "SCHEDULED", "PAUSED", "NONE"];

export function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function stateColor(stateType) {
  return cssVar(`--s-${String(stateType).toLowerCase()}`) || cssVar("--muted");
}

const PALETTE = ["--s-running", "--s-completed", "--s-pending", "--s-crashed", "--s-reused", "--s-failed", "--s-paused", "--s-scheduled"];

export function paletteColor(index) {
  return cssVar(PALETTE[index % PALETTE.length]);
}

function axes(yFormat) {
  const muted = cssVar("--muted");
  const grid = cssVar("--grid");
  return [
    { stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } },
    {
      stroke: muted, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
      values: yFormat ? (u, splits) => splits.map(yFormat) : undefined,
      // Wide enough for the longest label ("12 min 05 s"): uPlot does not measure them.
      size: (u, values) => 18 + 7 * Math.max(3, ...(values || []).map((v) => String(v).length)),
    },
  ];
}

/** A chart that rebuilds itself on resize and theme change; `build(width)` returns uPlot opts+data. */
class Chart {
  constructor(container, height) {
    this.container = container;
    this.height = height;
    this.plot = null;
    this.spec = null;
    this.observer = new ResizeObserver(() => this.resize());
    this.observer.observe(container);
    window.addEventListener("ledgerflow:theme", () => this.redraw());
  }

  width() {
    return Math.max(200, Math.floor(this.container.clientWidth));
  }

  show(spec) {
    this.spec = spec;
    this.redraw();
  }

  redraw() {
    if (!this.spec) return;
    if (this.plot) this.plot.destroy();
    const { options, data } = this.spec.build();
    this.plot = new uPlot({ width: this.width(), height: this.height, legend: { show: false }, ...options }, data, this.container);
  }

  /** New data with the same series: no rebuild. */
  update(spec) {
    const same = this.plot && this.spec && this.spec.key === spec.key;
    this.spec = spec;
    if (!same) return this.redraw();
    this.plot.setData(spec.build().data);
  }

  resize() {
    if (this.plot && Math.abs(this.plot.width - this.width()) > 2) this.plot.setSize({ width: this.width(), height: this.height });
  }
}

/**
 * Bars of `series` (each {label, color, values}) stacked at `xs` (seconds). uPlot has no
 * stacking of its own: each series is drawn at its cumulative height, the tallest first.
 */
export function stackedBars(container, { height = 220 } = {}) {
  const chart = new Chart(container, height);
  return {
    show(xs, series, { step = 3600, onHover } = {}) {
      const key = `bars:${series.map((s) => s.label).join("|")}`;
      chart.update({
        key,
        build() {
          const cumulative = [];
          let running = xs.map(() => 0);
          for (const s of series) {
            running = running.map((value, i) => value + (s.values[i] || 0));
            cumulative.push(running);
          }
          const order = series.map((_, i) => i).reverse();
          const bars = uPlot.paths.bars({ size: [0.85, 64], align: 0 });
          const options = {
            scales: { x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] }, y: { range: (u, min, max) => [0, Math.max(1, max)] } },
            axes: axes((v) => (Number.isInteger(v) ? String(v) : "")),
            cursor: { points: { show: false }, drag: { x: false, y: false } },
            series: [{}, ...order.map((i) => ({
              label: series[i].label, fill: series[i].color, stroke: series[i].color, width: 0, paths: bars,
              points: { show: false },
            }))],
            hooks: onHover ? {
              setCursor: [(u) => {
                const index = u.cursor.idx;
                onHover(index === null || index === undefined ? null : index);
              }],
            } : {},
          };
          return { options, data: [xs, ...order.map((i) => cumulative[i])] };
        },
      });
    },
  };
}

/** Lines of `series` (each {label, color, values, dash}) at `xs` (seconds). */
export function lineChart(container, { height = 220, yFormat, yRange } = {}) {
  const chart = new Chart(container, height);
  return {
    show(xs, series) {
      chart.show({
        key: `lines:${series.map((s) => s.label).join("|")}`,
        build() {
          const options = {
            scales: { x: { time: true }, y: yRange ? { range: () => yRange } : { range: (u, min, max) => [0, Math.max(max * 1.1, 0.001)] } },
            axes: axes(yFormat),
            cursor: { drag: { x: false, y: false } },
            series: [{}, ...series.map((s) => ({
              label: s.label, stroke: s.color, width: 2, dash: s.dash, spanGaps: true,
              points: { show: xs.length < 60, size: 5, fill: s.color },
            }))],
          };
          return { options, data: [xs, ...series.map((s) => s.values)] };
        },
      });
    },
  };
}

export function legend(list, items) {
  list.replaceChildren(...items.map(({ label, color }) => {
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.setAttribute("aria-hidden", "true");
    swatch.style.color = color;
    const item = document.createElement("li");
    item.append(swatch, label);
    return item;
  }));
}
