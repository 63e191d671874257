// The aggregates chart: SVG drawn here, no library. Measures (labs, vitals) show the mean of
// each bucket as a line with the min-max range as a band; nutrition shows a nutrient's total per
// bucket as bars. Values are the export's own strings, parsed as numbers.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg"; // the SVG namespace name, not a place to fetch from
  const WIDTH = 760, HEIGHT = 320, LEFT = 56, RIGHT = 16, TOP = 16, BOTTOM = 48;

  function node(tag, attrs, text) {
    const element = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs || {})) element.setAttribute(key, value);
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function seriesNames(data, domain) {
    if (!data.rows.length) return [];
    if (domain === "nutrition") {
      return data.columns.filter((c) => !["user_id", "granularity", "bucket_start", "meal_type"].includes(c));
    }
    const code = data.columns.indexOf("loinc_code");
    return [...new Set(data.rows.map((r) => r[code]))].sort();
  }

  function series(data, domain, name) {
    const column = (c) => data.columns.indexOf(c);
    const number = (v) => (v === "" || v === undefined ? null : Number(v));
    if (domain === "nutrition") {
      const at = column(name);
      return { kind: "bars", name, unit: "", points: data.rows.map((r) => ({
        label: r[column("bucket_start")], value: number(r[at]) })) };
    }
    const rows = data.rows.filter((r) => r[column("loinc_code")] === name);
    return { kind: "line", name, unit: rows.length ? rows[0][column("unit")] : "",
      points: rows.map((r) => ({ label: r[column("bucket_start")], value: number(r[column("avg")]),
        low: number(r[column("min")]), high: number(r[column("max")]), count: r[column("count")] })) };
  }

  function draw(picked) {
    const svg = node("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "aggregate-chart",
      "aria-label": `${picked.name} per bucket`, "data-points": String(picked.points.length) });
    const points = picked.points.filter((p) => p.value !== null);
    if (!points.length) {
      svg.append(node("text", { x: WIDTH / 2, y: HEIGHT / 2, "text-anchor": "middle" }, "no buckets"));
      return svg;
    }
    const values = points.flatMap((p) => [p.value, p.low ?? p.value, p.high ?? p.value]);
    let low = Math.min(...values), high = Math.max(...values);
    if (picked.kind === "bars") low = Math.min(0, low);
    if (high === low) { high += 1; low -= picked.kind === "bars" ? 0 : 1; }
    const plotW = WIDTH - LEFT - RIGHT, plotH = HEIGHT - TOP - BOTTOM;
    const step = plotW / points.length;
    const x = (i) => LEFT + step * (i + 0.5);
    const y = (v) => TOP + plotH * (1 - (v - low) / (high - low));
    for (let t = 0; t <= 4; t += 1) {
      const value = low + ((high - low) * t) / 4;
      svg.append(node("line", { class: "grid", x1: LEFT, x2: WIDTH - RIGHT, y1: y(value), y2: y(value) }));
      svg.append(node("text", { x: LEFT - 6, y: y(value) + 4, "text-anchor": "end" }, +value.toPrecision(4)));
    }
    svg.append(node("line", { class: "axis", x1: LEFT, x2: LEFT, y1: TOP, y2: TOP + plotH }));
    svg.append(node("line", { class: "axis", x1: LEFT, x2: WIDTH - RIGHT, y1: TOP + plotH, y2: TOP + plotH }));
    if (picked.kind === "bars") {
      points.forEach((p, i) => {
        const bar = node("rect", { class: "bar", x: x(i) - step * 0.35, width: step * 0.7,
          y: y(Math.max(p.value, 0)), height: Math.abs(y(p.value) - y(0)) });
        bar.append(node("title", {}, `${p.label}: ${p.value}`));
        svg.append(bar);
      });
    } else {
      const upper = points.map((p, i) => `${x(i)},${y(p.high ?? p.value)}`);
      const lower = points.map((p, i) => `${x(i)},${y(p.low ?? p.value)}`).reverse();
      svg.append(node("polygon", { class: "band", points: [...upper, ...lower].join(" ") }));
      svg.append(node("polyline", { class: "line", points: points.map((p, i) => `${x(i)},${y(p.value)}`).join(" ") }));
      points.forEach((p, i) => {
        const dot = node("circle", { class: "dot", cx: x(i), cy: y(p.value), r: 3 });
        dot.append(node("title", {}, `${p.label}: mean ${p.value} (min ${p.low}, max ${p.high}, ${p.count} readings)`));
        svg.append(dot);
      });
    }
    const every = Math.max(1, Math.ceil(points.length / 8));
    points.forEach((p, i) => {
      if (i % every === 0) svg.append(node("text", { x: x(i), y: TOP + plotH + 16, "text-anchor": "middle" }, p.label.slice(0, 16)));
    });
    svg.append(node("text", { x: LEFT, y: HEIGHT - 8 }, `${picked.name}${picked.unit ? ` (${picked.unit})` : ""}` +
      (picked.kind === "line" ? ": mean per bucket, band from min to max" : ": total per bucket")));
    return svg;
  }

  window.HealthflowChart = { seriesNames, series, draw };
})();
