// healthflow console: plain JavaScript, served by the console itself; it talks to its own origin
// only. Text from the server goes into the page with textContent (lab names are user data).
"use strict";

const POLL_MS = 2000;
const GRANULARITIES = {
  labs: ["daily", "monthly", "quarterly", "yearly"],
  vitals: ["hourly", "daily", "weekly", "monthly"],
  nutrition: ["daily", "weekly", "monthly"],
};
let timer = null;
let generation = 0; // a view's polls stop once another view is shown

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function post(path) {
  return api(path, { method: "POST", headers: { "X-Healthflow-Console": "1" } });
}

function badge(status) {
  return el("span", { class: `badge ${status}` }, status.toLowerCase().replace("_", " "));
}

function seconds(value) {
  if (value === null || value === undefined) return "--";
  return value < 1 ? `${Math.round(value * 1000)} ms` : `${value.toFixed(2)} s`;
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "--";
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

function poll(fn) {
  const mine = generation;
  clearTimeout(timer);
  const tick = async () => {
    if (mine !== generation) return;
    const again = await fn().catch(() => true);
    if (again && mine === generation) timer = setTimeout(tick, POLL_MS);
  };
  tick();
}

function params() {
  const query = location.hash.split("?")[1] || "";
  return new URLSearchParams(query);
}

function setParams(base, values) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) if (value) query.set(key, value);
  const text = query.toString();
  history.replaceState(null, "", `#/${base}${text ? "?" + text : ""}`);
}

// ---------------------------------------------------------------------------- executions

function runButton(report) {
  const running = report && report.active;
  return el("button", {
    id: "run-pending",
    disabled: running,
    title: "Like `healthflow run`: a trigger per user and domain with pending rows, plus queued and redriven ones",
    onclick: async () => {
      try { await post("/api/run"); } catch (error) { alert(error.message); }
      route();
    },
  }, running ? "Processing…" : "Process pending");
}

function runNotice(report) {
  if (!report || (report.done && !report.triggers && !report.error)) return null;
  const state = report.active ? "processing" : "last run";
  const error = report.error ? el("span", { class: "error" }, ` failed: ${report.error}`) : null;
  return el("p", { class: "notice", id: "run-report" },
    `${state}: ${report.triggers} triggers, ${report.executions} executions stored, ` +
    `${report.dead_letters} dead letters`, error);
}

function executionsView() {
  const query = params();
  const status = el("select", { name: "status" },
    ["", "RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"].map(
      (s) => el("option", { value: s, selected: query.get("status") === s }, s || "any")));
  const domain = el("select", { name: "domain" },
    ["", "labs", "vitals", "nutrition"].map(
      (d) => el("option", { value: d, selected: query.get("domain") === d }, d || "any")));
  const user = el("input", { name: "user_id", type: "number", min: "1", placeholder: "any",
                             value: query.get("user_id") || "" });
  const body = el("tbody");
  const notice = el("div");
  const toolbar = el("span");
  const refresh = () => {
    setParams("executions", { status: status.value, domain: domain.value, user_id: user.value });
    load();
  };
  for (const input of [status, domain, user]) input.addEventListener("change", refresh);
  show(
    el("h2", {}, "Executions"),
    el("div", { class: "filters" },
      el("label", {}, "status", status), el("label", {}, "domain", domain),
      el("label", {}, "user", user), toolbar),
    notice,
    el("table", { id: "executions" },
      el("thead", {}, el("tr", {}, ["started", "machine", "execution", "status", "domain", "user",
                                      "duration", "error"].map((h) => el("th", {}, h)))),
      body),
  );
  const load = () => poll(async () => {
    const search = new URLSearchParams({ status: status.value, domain: domain.value,
                                         user_id: user.value });
    const data = await api(`/api/executions?${search}`);
    toolbar.replaceChildren(runButton(data.run));
    notice.replaceChildren(runNotice(data.run) || "");
    body.replaceChildren(...data.executions.map((e) => el("tr", {
      "data-name": e.name, "data-machine": e.machine, "data-status": e.status },
      el("td", {}, when(e.started_at)),
      el("td", {}, e.machine === "express" ? "Express (parent)" : "Standard (labs)"),
      el("td", {}, el("a", { href: `#/execution/${e.machine}/${encodeURIComponent(e.name)}` }, e.name)),
      el("td", {}, badge(e.status)), el("td", {}, e.domain || "--"),
      el("td", { class: "num" }, e.user_id ?? "--"), el("td", { class: "num" }, seconds(e.duration)),
      el("td", {}, [e.error, e.caught && `caught ${e.caught}`].filter(Boolean).join(": ")))));
    if (!data.executions.length) {
      body.append(el("tr", {}, el("td", { colspan: "8", class: "muted" },
        "No executions yet: run `healthflow run --demo` (or press Process pending).")));
    }
    return true; // keep polling: new and running executions appear without a reload
  });
  load();
}

// ---------------------------------------------------------------------------- one execution

function legend() {
  return el("div", { class: "legend", id: "legend" },
    el("span", { class: "succeeded" }, "succeeded"), el("span", { class: "caught" }, "caught (error handled by Catch)"),
    el("span", { class: "failed" }, "failed"), el("span", { class: "running" }, "running"),
    el("span", { class: "not-reached" }, "not reached"),
    el("span", { class: "catch-edge" }, "Catch transition"));
}

function payload(value) {
  if (value === null || value === undefined) return "";
  return el("details", {}, el("summary", {}, "show"), el("pre", {}, JSON.stringify(value, null, 1)));
}

function executionView(machine, name) {
  const box = el("div", { class: "graph-box", id: "graph" });
  const side = el("div", { class: "summary" });
  show(el("h2", {}, `${machine === "express" ? "Express" : "Standard (labs)"} execution ${name}`),
       legend(), el("div", { class: "execution" }, box, side));
  let drawn = "";
  poll(async () => {
    let data;
    try {
      data = await api(`/api/executions/${machine}/${encodeURIComponent(name)}`);
    } catch (error) {
      side.replaceChildren(el("p", { class: "error" }, error.message));
      return false;
    }
    const s = data.summary;
    if (data.graph !== drawn) {
      box.innerHTML = data.graph; // built by the console from the ASL file, names escaped
      drawn = data.graph;
      for (const node of box.querySelectorAll("g.state")) {
        node.addEventListener("click", () => selectState(node));
      }
    }
    const related = [];
    if (s.child) related.push(el("dd", {}, el("a", { id: "child-link", href: `#/execution/labs/${encodeURIComponent(s.child)}` }, `labs workflow ${s.child}`)));
    if (s.parent) related.push(el("dd", {}, el("a", { id: "parent-link", href: `#/execution/express/${encodeURIComponent(s.parent)}` }, `parent ${s.parent}`)));
    side.replaceChildren(
      el("dl", {},
        el("dt", {}, "status"), el("dd", { id: "execution-status" }, badge(s.status)),
        el("dt", {}, "started"), el("dd", {}, when(s.started_at)),
        el("dt", {}, "duration"), el("dd", {}, seconds(s.duration)),
        el("dt", {}, "domain / user"), el("dd", {}, `${s.domain || "--"} / ${s.user_id ?? "--"}`),
        el("dt", {}, "error"), el("dd", {}, s.error || "none"),
        s.caught ? el("dt", {}, "caught") : null, s.caught ? el("dd", {}, s.caught) : null,
        related.length ? el("dt", {}, "related") : null, related),
      el("h3", {}, "States"),
      el("table", { id: "states" },
        el("thead", {}, el("tr", {}, ["state", "status", "start", "duration", "error", "input", "output"].map((h) => el("th", {}, h)))),
        el("tbody", {}, data.states.map((r) => el("tr", { "data-state": r.name, "data-status": r.status },
          el("td", {}, r.name), el("td", {}, badge(r.status)),
          el("td", { class: "num" }, `+${r.started.toFixed(3)} s`),
          el("td", { class: "num" }, seconds(r.duration)), el("td", {}, r.error || ""),
          el("td", {}, payload(r.input)), el("td", {}, payload(r.output)))))),
      el("h3", {}, "Events"),
      el("table", { id: "events" },
        el("thead", {}, el("tr", {}, ["#", "offset", "type", "state", "error"].map((h) => el("th", {}, h)))),
        el("tbody", {}, data.events.map((e) => el("tr", {},
          el("td", { class: "num" }, e.id), el("td", { class: "num" }, `+${e.offset.toFixed(3)} s`),
          el("td", {}, e.type), el("td", {}, e.state || ""), el("td", {}, e.error || "")))))
    );
    document.body.dataset.loaded = `${machine}/${name}`;
    return s.status === "RUNNING"; // a running execution redraws as it goes
  });
}

function selectState(node) {
  const link = node.getAttribute("data-link");
  if (link) { location.hash = `#/execution/${link}`; return; }
  for (const other of document.querySelectorAll("g.state.selected")) other.classList.remove("selected");
  node.classList.add("selected");
  const name = node.getAttribute("data-state");
  for (const row of document.querySelectorAll("#states tr")) {
    row.classList.toggle("highlight", row.getAttribute("data-state") === name);
    if (row.getAttribute("data-state") === name) row.scrollIntoView({ block: "nearest" });
  }
}

// ---------------------------------------------------------------------------- dead letters

function deadLettersView() {
  const body = el("tbody");
  const status = el("div");
  const redrive = el("button", { id: "redrive", onclick: async () => {
    const result = await post("/api/dead-letters/redrive").catch((e) => ({ error: e.message }));
    status.replaceChildren(el("p", { class: "notice" }, result.error ? result.error :
      `redriven ${result.redriven} (queued for the next run), kept ${result.kept.length}` +
      result.kept.map((k) => `; kept ${k.error}: ${k.why}`).join("")));
    load();
  } }, "Redrive all");
  const toolbar = el("span");
  show(el("h2", {}, "Dead letters"),
       el("p", { class: "muted" }, "Redrive re-sends each dead letter's trigger to the local queue (as `healthflow dlq redrive` does); Process pending delivers it. A dead letter without a valid trigger stays here."),
       el("div", { class: "toolbar" }, redrive, toolbar), status,
       el("table", { id: "dead-letters" },
         el("thead", {}, el("tr", {}, ["failed at", "kind", "error", "reason", "trigger", "execution"].map((h) => el("th", {}, h)))),
         body));
  const load = () => poll(async () => {
    const [data, executions] = await Promise.all([api("/api/dead-letters"), api("/api/executions?status=RUNNING")]);
    toolbar.replaceChildren(runButton(executions.run), el("span", { class: "muted" }, ` ${data.queued} queued`));
    body.replaceChildren(...data.dead_letters.map((d) => el("tr", {},
      el("td", {}, d.failed_at || "--"), el("td", {}, d.kind), el("td", {}, d.error),
      el("td", {}, d.reason),
      el("td", {}, d.job_type ? `${d.job_type} user ${d.user_id}` : "no valid trigger"),
      el("td", {}, d.execution ? el("a", { href: `#/execution/${d.machine}/${encodeURIComponent(d.execution)}` }, d.execution) : "--"))));
    if (!data.dead_letters.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "The dead-letter queue is empty.")));
    redrive.disabled = !data.dead_letters.some((d) => d.redrivable);
    return true;
  });
  load();
}

// ---------------------------------------------------------------------------- aggregates

async function aggregatesView() {
  const query = params();
  const domain = el("select", { name: "domain" }, Object.keys(GRANULARITIES).map(
    (d) => el("option", { value: d, selected: query.get("domain") === d }, d)));
  const granularity = el("select", { name: "granularity" });
  const user = el("select", { name: "user_id" });
  const series = el("select", { name: "series" });
  const chart = el("div", { class: "chart", id: "chart" });
  const names = el("aside", { class: "names", id: "uncategorized" });
  const table = el("div");
  show(el("h2", {}, "Aggregates"),
       el("p", { class: "muted" }, "The numbers `healthflow export` writes for this user (the same query)."),
       el("div", { class: "filters" }, el("label", {}, "domain", domain),
          el("label", {}, "granularity", granularity), el("label", {}, "user", user),
          el("label", {}, "series", series)),
       el("div", { class: "aggregates" }, el("div", {}, chart, table), names));
  const users = (await api("/api/users")).users;
  user.replaceChildren(...users.map((u) => el("option", { value: u, selected: query.get("user_id") === String(u) }, u)));
  const fillGranularity = () => {
    const wanted = query.get("granularity");
    granularity.replaceChildren(...GRANULARITIES[domain.value].map(
      (g) => el("option", { value: g, selected: wanted === g }, g)));
  };
  fillGranularity();
  let data = null;
  const draw = () => {
    if (!data) return;
    const picked = window.HealthflowChart.series(data, domain.value, series.value);
    chart.replaceChildren(window.HealthflowChart.draw(picked));
    table.replaceChildren(el("details", {}, el("summary", {}, `${data.rows.length} rows (as exported)`),
      el("table", { id: "aggregate-rows" }, el("thead", {}, el("tr", {}, data.columns.map((c) => el("th", {}, c)))),
        el("tbody", {}, data.rows.map((r) => el("tr", {}, r.map((v) => el("td", {}, v))))))));
  };
  const load = async () => {
    if (!user.value) { chart.replaceChildren(el("p", { class: "muted" }, "No users in the database yet.")); return; }
    setParams("aggregates", { domain: domain.value, granularity: granularity.value, user_id: user.value, series: series.value });
    const search = new URLSearchParams({ domain: domain.value, granularity: granularity.value, user_id: user.value });
    data = await api(`/api/aggregates?${search}`).catch((e) => ({ columns: [], rows: [], uncategorized: [], error: e.message }));
    const options = window.HealthflowChart.seriesNames(data, domain.value);
    const keep = options.includes(series.value) ? series.value : (options.includes(query.get("series")) ? query.get("series") : options[0]);
    series.replaceChildren(...options.map((o) => el("option", { value: o, selected: o === keep }, o)));
    draw();
    names.replaceChildren(el("h3", {}, "Uncategorized lab names"),
      domain.value !== "labs" ? el("p", { class: "muted" }, "Labs only.") :
      data.uncategorized.length === 0 ? el("p", { class: "muted" }, "None: every lab result of this user has a code.") :
      el("ul", {}, data.uncategorized.map((n) => el("li", {}, `${n.test_name}${n.unit ? ` (${n.unit})` : ""}: ${n.results}`))),
      el("p", { class: "muted" }, "Review them with `healthflow labs review`."));
    document.body.dataset.loaded = "aggregates";
  };
  domain.addEventListener("change", () => { fillGranularity(); load(); });
  granularity.addEventListener("change", load);
  user.addEventListener("change", load);
  series.addEventListener("change", () => { setParams("aggregates", { domain: domain.value, granularity: granularity.value, user_id: user.value, series: series.value }); draw(); });
  await load();
}

// ---------------------------------------------------------------------------- routing

function route() {
  generation += 1;
  clearTimeout(timer);
  delete document.body.dataset.loaded;
  const path = location.hash.replace(/^#\/?/, "").split("?")[0];
  const [view, machine, ...rest] = path.split("/");
  for (const link of document.querySelectorAll("nav a")) {
    const current = link.dataset.view === (view === "execution" ? "executions" : view || "executions");
    link.classList.toggle("current", current);
  }
  const fail = (error) => show(el("p", { class: "error" }, error.message));
  if (view === "execution") return executionView(machine, decodeURIComponent(rest.join("/")));
  if (view === "dead-letters") return deadLettersView();
  if (view === "aggregates") return aggregatesView().catch(fail);
  return executionsView();
}

window.addEventListener("hashchange", route);
route();
