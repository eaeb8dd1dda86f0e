// Tracktor's dashboard: one page over the JSON API (/api/v1, tracktor/analytics/api.py).
//
// Routes live in the address's hash: #/APP (the dashboard), #/APP/metrics/NAME,
// #/APP/funnels/NAME, #/APP/people, #/APP/people/ID, #/APP/segments, #/APP/segments/NAME,
// #/APP/define; the date range rides along as ?range=… or ?from=…&to=….
//
// Safety: every value from the data reaches the page as text (text nodes, SVG <text>),
// never as HTML; the app's read token stays in this tab's sessionStorage and goes only to
// this origin's API. Pages showing live numbers poll the API every REFRESH_MS and redraw in
// place when the answer changed, so a new event shows without a reload.
"use strict";

const REFRESH_MS = 2000;
const PAGE = 25;           // rows per page of the people lists
const RANGES = [["today", "Today"], ["last-7-days", "Last 7 days"], ["last-30-days", "Last 30 days"],
                ["last-90-days", "Last 90 days"], ["custom", "Custom…"]];
const SVGNS = "http://www.w3.org/2000/svg";
let poller = null;         // the current page's next refresh
let shown = null;          // the JSON the current page last drew (to redraw only on a change)
let generation = 0;        // which render is current: an answer for an earlier address is dropped

// -- building the page (text only) -----------------------------------------------------------
function build(make, tag, attrs, children) {
  const node = make(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}
const h = (tag, attrs, ...children) => build(t => document.createElement(t), tag, attrs, children);
const s = (tag, attrs, ...children) => build(t => document.createElementNS(SVGNS, t), tag, attrs, children);

const numbers = new Intl.NumberFormat("en-US", {maximumFractionDigits: 2});
function fmt(x, type) {
  if (x === null || x === undefined) return "–";
  if (type === "conversion_rate") return numbers.format(100 * x) + "%";
  if (type === "avg_time_between") return numbers.format(x) + " s";
  return numbers.format(x);
}
const pct = x => (x === null || x === undefined) ? "" : numbers.format(100 * x) + "%";
const when = text => String(text).replace(/\.\d+/, "").replace(/\+00:00$/, " UTC");

// -- the address -----------------------------------------------------------------------------
function route() {
  const [path, query] = location.hash.replace(/^#\/?/, "").split("?");
  let parts;
  try { parts = path.split("/").filter(Boolean).map(decodeURIComponent); } catch (e) { parts = [null]; }  // a bad %
  return {parts, params: new URLSearchParams(query || "")};
}
function link(parts, params) {
  const query = params && params.toString();
  return "#/" + parts.map(encodeURIComponent).join("/") + (query ? "?" + query : "");
}
function rangeOf(params) {          // the range's part of the address, carried by every link
  const kept = new URLSearchParams();
  for (const key of ["range", "from", "to"]) if (params.get(key)) kept.set(key, params.get(key));
  return kept;
}
function here(changes) {            // this page's address with some of its parameters changed
  const {parts, params} = route();
  return link(parts, withParams(params, changes));
}
function withParams(params, changes) {
  const next = new URLSearchParams(params);
  for (const [key, value] of Object.entries(changes)) {
    if (value === null || value === undefined || value === "") next.delete(key); else next.set(key, value);
  }
  return next;
}

// -- the API -----------------------------------------------------------------------------------
class SignInNeeded extends Error {}
const tokenKey = app => "tracktor-read-token:" + app;

async function api(app, path, params, options) {
  const token = sessionStorage.getItem(tokenKey(app));
  if (!token) throw new SignInNeeded("Sign in with the app's read token.");
  // (a change with the admin token: `other`; a refusal of it is the change's error, not a sign-out)
  const query = params && params.toString(), {method, body, token: other} = options || {};
  const headers = {"Authorization": "Bearer " + (other || token)};
  if (body) headers["Content-Type"] = "application/json";
  const resp = await fetch("/api/v1/apps/" + encodeURIComponent(app) + path + (query ? "?" + query : ""),
                           {method: method || "GET", headers, body});
  let data = null;
  try { data = await resp.json(); } catch (e) { data = {error: resp.status + " " + resp.statusText}; }
  if ((resp.status === 401 || resp.status === 403) && other === undefined) {
    sessionStorage.removeItem(tokenKey(app));
    throw new SignInNeeded(data.error || "the token was refused");
  }
  if (!resp.ok) throw new Error(data.error || resp.statusText);
  return data;
}
const rangeQuery = params => rangeOf(params).toString() ? rangeOf(params) : new URLSearchParams({range: "last-7-days"});

// -- the frame: navigation and the range picker -------------------------------------------------
function drawNav(app, here, params) {
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  if (!app) return;
  const range = rangeOf(params);
  const item = (label, parts, name) => h("a", {href: link(parts, range), class: name === here ? "here" : null}, label);
  nav.append(h("span", {class: "app"}, app), item("Dashboard", [app], "dashboard"), item("People", [app, "people"], "people"),
             item("Segments", [app, "segments"], "segments"), item("Define", [app, "define"], "define"),
             h("a", {href: "#/", onclick: () => sessionStorage.removeItem(tokenKey(app))}, "Sign out"));
}

function drawRange(params, wanted) {
  const box = document.getElementById("range");
  box.replaceChildren();
  if (!wanted) return;
  const custom = params.get("from") && params.get("to");
  const current = custom ? "custom" : (params.get("range") || "last-7-days");
  const select = h("select", {id: "range-select", "aria-label": "date range"},
                   RANGES.map(([value, label]) => h("option", {value, selected: value === current}, label)));
  const from = h("input", {type: "date", id: "range-from", value: params.get("from") || "", "aria-label": "first day"});
  const to = h("input", {type: "date", id: "range-to", value: params.get("to") || "", "aria-label": "last day"});
  const apply = h("button", {id: "range-apply", type: "button"}, "Apply");
  const showCustom = () => { for (const n of [from, to, apply]) n.hidden = select.value !== "custom"; };
  select.addEventListener("change", () => {
    showCustom();
    if (select.value !== "custom") location.hash = here({range: select.value, from: null, to: null});
  });
  apply.addEventListener("click", () => {
    if (from.value && to.value) location.hash = here({range: null, from: from.value, to: to.value});
  });
  box.append(select, from, to, apply);
  showCustom();
}

// -- charts (hand-made SVG: a few kinds of bars need no library) --------------------------------
function dailyBars(days, type, size) {
  const small = size === "small";
  const peak = Math.max(0, ...days.map(([, v]) => v || 0)) || 1;
  const left = small ? 0 : 12 + 7 * fmt(peak, type).length;   // room for the peak's label
  const width = small ? 240 : Math.max(320, left + 26 * days.length), height = small ? 54 : 240;
  const top = small ? 2 : 14, bottom = small ? 2 : 44;
  const plot = height - top - bottom, step = (width - left) / Math.max(days.length, 1);
  const chart = s("svg", {viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: small ? "spark" : "daily",
                          "aria-label": small ? "daily values" : "the value of each day"});
  if (!small) {
    chart.append(s("line", {x1: left, y1: height - bottom, x2: width, y2: height - bottom, stroke: "#9aa4b8"}),
                 s("text", {x: left - 6, y: top + 4, "text-anchor": "end"}, fmt(peak, type)),
                 s("text", {x: left - 6, y: height - bottom, "text-anchor": "end"}, "0"));
  }
  days.forEach(([day, value], i) => {
    const x = left + i * step + step * 0.15, w = Math.max(step * 0.7, 1);
    const bar = value === null ? 2 : Math.max(1, Math.round(plot * value / peak));
    chart.append(s("rect", {class: value === null ? "bar none" : "bar", x: x.toFixed(1), y: height - bottom - bar,
                            width: w.toFixed(1), height: bar, "data-day": day, "data-value": value === null ? "" : value},
                   s("title", {}, `${day}: ${fmt(value, type)}`)));
    const every = Math.ceil(days.length / 31);
    if (!small && i % every === 0) {
      const tx = x + w / 2, ty = height - bottom + 12;
      chart.append(s("text", {x: tx.toFixed(1), y: ty, "text-anchor": "end", transform: `rotate(-50 ${tx.toFixed(1)} ${ty})`}, day.slice(5)));
    }
  });
  return chart;
}

function funnelBars(steps, onStep, chosen, size) {
  const first = steps.length ? steps[0].people || 1 : 1;
  const small = size === "small";
  return h("div", {class: small ? "steps small" : "steps", role: "img", "aria-label": "people at each step"},
    steps.map((st, i) => {
      const conv = st.from_previous === null ? "" : ` · ${pct(st.from_previous)} of previous · ${pct(st.from_first)} of first`;
      const row = h("div", {class: "step" + (chosen === i + 1 ? " chosen" : "") + (onStep ? " clickable" : ""),
                            "data-step": i + 1, "data-people": st.people, title: `${st.event}: ${st.people}`},
        small ? null : h("div", {class: "label"}, `${i + 1}. ${st.event}`),
        h("div", {class: "track"}, h("div", {class: "fill"}), h("span", {class: "count"},
          numbers.format(st.people) + (small ? "" : conv))));
      // the first step's bar is 70% of the row, leaving room for its count
      row.querySelector(".fill").style.width = (st.people ? Math.max(0.4, 70 * st.people / first) : 0.4) + "%";
      if (onStep) {
        row.tabIndex = 0;
        row.addEventListener("click", () => onStep(i + 1));
        row.addEventListener("keydown", ev => { if (ev.key === "Enter") onStep(i + 1); });
      }
      return row;
    }));
}

// -- pages ----------------------------------------------------------------------------------------
const main = () => document.getElementById("main");
function table(heads, rows, numeric) {   // on a phone each row stacks its cells, labelled (dashboard.css)
  for (const row of rows) [...row.children].forEach((cell, i) => cell.setAttribute("data-label", heads[i]));
  return h("div", {class: "scroll"}, h("table", {},
    h("thead", {}, h("tr", {}, heads.map((t, i) => h("th", {class: numeric && numeric.includes(i) ? "num" : null}, t)))),
    h("tbody", {}, rows)));
}
const personLink = (app, id, params) => h("a", {href: link([app, "people", id], rangeOf(params)), class: "person"}, id);

function signIn(app, message) {
  drawNav(null); drawRange(null, false);
  const appInput = h("input", {id: "signin-app", name: "app", value: app || "", required: true, autocomplete: "username"});
  const token = h("input", {id: "signin-token", name: "token", type: "password", required: true, autocomplete: "off"});
  const error = h("p", {class: "error", hidden: !message}, message || "");
  const form = h("form", {class: "panel signin", id: "signin"},
    h("h1", {}, "Sign in"), h("p", {class: "note"}, "Each app's analytics are read with its read token (apps[].read_token in tracktor.yaml)."),
    error, h("label", {for: "signin-app"}, "App id (sid)"), appInput, h("label", {for: "signin-token"}, "Read token"), token,
    h("div", {class: "buttons"}, h("button", {type: "submit", id: "signin-submit"}, "Sign in")));
  form.addEventListener("submit", async ev => {
    ev.preventDefault();
    const sid = appInput.value.trim();
    sessionStorage.setItem(tokenKey(sid), token.value);
    try {
      await api(sid, "", null);
      if (route().parts[0] === sid) render(); else location.hash = link([sid]);
    } catch (e) {
      sessionStorage.removeItem(tokenKey(sid));
      error.textContent = e.message; error.hidden = false;
    }
  });
  main().replaceChildren(form);
}

function header(title, extra) {
  return h("div", {}, h("h1", {}, title), extra || null, h("p", {class: "updated", id: "updated"}, ""));
}
function stamp() {
  const n = document.getElementById("updated");
  if (n) n.textContent = "updated " + new Date().toLocaleTimeString("en-GB") + ", refreshed every " + REFRESH_MS / 1000 + " s";
}

async function dashboardPage(app, params) {
  const data = await api(app, "/dashboard", rangeQuery(params));
  return [header(`${data.name}: ${data.first} – ${data.last}`),
    h("h2", {}, "Metrics"),
    h("div", {class: "grid", id: "metrics"}, data.metrics.map(m => h("div", {class: "card metric", "data-name": m.name},
      h("h2", {}, h("a", {href: link([app, "metrics", m.name], rangeOf(params))}, m.name), m.saved ? " (saved)" : ""),
      h("div", {class: "headline", "data-total": m.total}, fmt(m.total, m.type)),
      h("div", {class: "sub"}, `${m.type.replace(/_/g, " ")} · ${numbers.format(m.people)} people`),
      dailyBars(m.days, m.type, "small")))),
    h("h2", {}, "Funnels"),
    h("div", {class: "grid", id: "funnels"}, data.funnels.map(f => h("div", {class: "card funnel", "data-name": f.name},
      h("h2", {}, h("a", {href: link([app, "funnels", f.name], rangeOf(params))}, f.name)),
      h("div", {class: "sub"}, f.steps.map(st => st.event).join(" → ")),
      funnelBars(f.steps, null, null, "small")))),
    h("h2", {}, "Segments"),
    h("div", {class: "grid", id: "segments"}, data.segments.map(sg => h("div", {class: "card segment", "data-name": sg.name},
      h("h2", {}, h("a", {href: link([app, "segments", sg.name], rangeOf(params))}, sg.name)),
      h("div", {class: "headline"}, numbers.format(sg.count)), h("div", {class: "sub"}, "members now"))))];
}

function metricView(m, title) {
  const stat = (label, value, id, type) => h("div", {class: "stat", id, "data-value": value},
    h("div", {class: "label"}, label), h("div", {class: "value"}, type === "people" ? numbers.format(value) : fmt(value, type)));
  return [header(title), h("div", {class: "panel"}, dailyBars(m.days, m.type, "large"),
    h("div", {class: "stats"}, stat("Over the range", m.total, "stat-total", m.type),
      stat("Daily maximum", m.daily_max, "stat-max", m.type), stat("Daily minimum", m.daily_min, "stat-min", m.type),
      stat("Daily average", m.daily_avg, "stat-avg", m.type), stat("Number of people", m.people, "stat-people", "people")),
    h("p", {class: "note"}, m.type.replace(/_/g, " ") + " (docs/metrics.md says what it means)"),
    table(["Day", "Value"], m.days.slice().reverse().map(([d, v]) => h("tr", {}, h("td", {}, d), h("td", {class: "num"}, fmt(v, m.type)))), [1]))];
}

async function metricPage(app, params, name) {
  const m = await api(app, "/metrics/" + encodeURIComponent(name), rangeQuery(params));
  return metricView(m, `Metric ${name}`);
}

function funnelView(app, params, steps, title, drill) {
  const chosen = Number(params.get("step")) || null;
  const go = step => { location.hash = here({step, dropped: null, page: null}); };
  return [header(title), h("div", {class: "panel"}, funnelBars(steps, drill ? go : null, chosen, "large"),
    table(["Step", "People", "From previous", "From first"], steps.map((st, i) => h("tr", {},
      h("td", {}, `${i + 1}. ${st.event}`), h("td", {class: "num"}, numbers.format(st.people)),
      h("td", {class: "num"}, pct(st.from_previous)), h("td", {class: "num"}, pct(st.from_first)))), [1, 2, 3]),
    drill ? h("p", {class: "note"}, "Click a step for the people who reached it, or who went no further.") : null),
    drill && chosen ? h("div", {class: "panel", id: "drill"}, "…") : null];
}

async function funnelPage(app, params, name) {
  const [steps, about] = await Promise.all([api(app, "/funnels/" + encodeURIComponent(name), rangeQuery(params)),
                                            api(app, "", null)]);
  const window = about.windows[name];
  const nodes = funnelView(app, params, steps, `Funnel ${name}`, true);
  nodes[0].append(h("p", {class: "note", id: "funnel-window"}, window ?
    `Window: each person's steps within ${duration(window)} of their first step.` : "Window: the whole range."));
  return nodes;
}

function duration(seconds) {
  for (const [unit, size] of [["day", 86400], ["hour", 3600], ["minute", 60]]) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size} ${unit}${seconds === size ? "" : "s"}`;
  }
  return `${numbers.format(seconds)} seconds`;
}

async function fillDrill(app, params, name, current) {   // the people of a step, after each redraw of the funnel
  if (!document.getElementById("drill")) return;
  const step = Number(params.get("step")), dropped = params.get("dropped") === "true", page = Number(params.get("page")) || 0;
  const query = withParams(rangeQuery(params), {step, dropped: dropped ? "true" : null, limit: PAGE + 1, offset: page * PAGE});
  const people = await api(app, "/funnels/" + encodeURIComponent(name), query);
  const box = document.getElementById("drill");
  if (!current() || !box) return;
  box.replaceChildren(
    h("h2", {}, `Step ${step}: ${dropped ? "dropped after it" : "reached it"}`),
    h("div", {class: "buttons"},
      h("a", {class: "button" + (dropped ? "" : " chosen"), id: "drill-reached", href: here({dropped: null, page: null})}, "Reached"),
      h("a", {class: "button" + (dropped ? " chosen" : ""), id: "drill-dropped", href: here({dropped: "true", page: null})}, "Dropped after")),
    people.length ? table(["ID", "Email", "Last action", "When"], people.slice(0, PAGE).map(p => h("tr", {},
      h("td", {class: "id"}, personLink(app, p.person, params)), h("td", {class: "id"}, p.email),
      h("td", {}, p.last_action), h("td", {}, when(p.last_seen))))) : h("p", {class: "note"}, "Nobody."),
    pager(page, people.length > PAGE));
}

function pager(page, more, total) {
  return h("div", {class: "pager"},
    page > 0 ? h("a", {class: "button", href: here({page: page - 1 || null}), id: "page-previous"}, "← Previous") : null,
    h("span", {class: "note"}, `page ${page + 1}` + (total !== undefined ? ` of ${Math.max(1, Math.ceil(total / PAGE))} (${numbers.format(total)} people)` : "")),
    more ? h("a", {class: "button", href: here({page: page + 1}), id: "page-next"}, "Next →") : null);
}

async function peoplePage(app, params) {
  const page = Number(params.get("page")) || 0, q = params.get("q") || "";
  const found = await api(app, "/people", new URLSearchParams({q, limit: PAGE, offset: page * PAGE}));
  const input = h("input", {type: "search", id: "people-q", value: q, placeholder: "an id, part of an email, or key=value",
                            "aria-label": "search people"});
  const form = h("form", {class: "inline", id: "people-search"}, input, h("button", {type: "submit"}, "Search"));
  form.addEventListener("submit", ev => {
    ev.preventDefault();
    location.hash = link([app, "people"], withParams(rangeOf(params), {q: input.value.trim()}));
  });
  return [h("h1", {}, "People"), form, h("div", {class: "panel"},
    found.people.length ? table(["ID", "Email", "Other ids", "Properties"], found.people.map(p => h("tr", {class: "person-row"},
      h("td", {class: "id"}, personLink(app, p.person, params)), h("td", {class: "id"}, p.email),
      h("td", {class: "id"}, p.ids.filter(i => i !== p.person).join(", ")),
      h("td", {class: "data"}, Object.entries(p.properties).filter(([k]) => k !== "email").map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(", "))))) :
      h("p", {class: "note"}, q ? "Nobody matches." : "Nobody yet."),
    pager(page, (page + 1) * PAGE < found.matches, found.matches))];
}

async function personPage(app, params, id) {
  const p = await api(app, "/people", new URLSearchParams({id}));  // as a parameter: an id may be "." or ".."
  return [h("h1", {}, `Person ${p.person}`),
    p.person !== id ? h("p", {class: "note", id: "merged-from"}, `${id} is one of this person's ids (merged).`) : null,
    h("div", {class: "grid"},
      h("div", {class: "card"}, h("h2", {}, "Ids"), h("div", {class: "chips", id: "person-ids"}, p.ids.map(i => h("span", {class: "chip"}, i)))),
      h("div", {class: "card"}, h("h2", {}, "Segments"), p.segments.length ? h("ul", {id: "person-segments"},
        p.segments.map(([name, since]) => h("li", {}, h("a", {href: link([app, "segments", name], rangeOf(params))}, name),
                                           ` since ${when(since)}`))) : h("p", {class: "note"}, "In no segment."))),
    h("div", {class: "panel"}, h("h2", {}, "Properties"), Object.keys(p.properties).length ?
      table(["Property", "Value"], Object.entries(p.properties).sort().map(([k, v]) => h("tr", {},
        h("td", {}, k), h("td", {class: "data"}, typeof v === "string" ? v : JSON.stringify(v))))) :
      h("p", {class: "note"}, "No properties.")),
    h("div", {class: "panel"}, h("h2", {}, "Recent events, newest first"), p.events.length ?
      table(["When", "Event", "Id", "Data"], p.events.map(e => h("tr", {class: "event-row"},
        h("td", {}, when(e.ts)), h("td", {}, e.event), h("td", {class: "id"}, e.distinct_id),
        h("td", {class: "data"}, Object.keys(e.data).length ? JSON.stringify(e.data) : "")))) :
      h("p", {class: "note"}, "No events."))];
}

async function segmentsPage(app, params) {
  const data = await api(app, "/segments", rangeQuery(params));
  return [header(`Segments: ${data.first} – ${data.last}`), h("div", {class: "panel"}, data.segments.length ?
    table(["Segment", "Members now", "Members at the end of each day"], data.segments.map(sg => h("tr", {class: "segment-row"},
      h("td", {}, h("a", {href: link([app, "segments", sg.name], rangeOf(params))}, sg.name)),
      h("td", {class: "num"}, numbers.format(sg.count)), h("td", {}, dailyBars(sg.days, null, "small")))), [1]) :
    h("p", {class: "note"}, "No segments."))];
}

async function segmentPage(app, params, name) {
  const sg = await api(app, "/segments/" + encodeURIComponent(name), withParams(rangeQuery(params), {limit: 100}));
  return [header(`Segment ${name}: ${numbers.format(sg.count)} members now`),
    h("div", {class: "panel"}, h("h2", {}, "Members at the end of each day"), dailyBars(sg.days, null, "large")),
    h("div", {class: "panel", id: "segment-members"}, h("h2", {}, sg.count > sg.members.length ? `The first ${sg.members.length} members by id` : "Members"),
      sg.members.length ? table(["ID", "Email", "Since"], sg.members.map(m => h("tr", {},
        h("td", {class: "id"}, personLink(app, m.person, params)), h("td", {class: "id"}, m.email), h("td", {}, when(m.since))))) :
      h("p", {class: "note"}, "No members."))];
}

function definePage(app, params) {
  const kind = h("select", {id: "define-kind"}, h("option", {value: "metric"}, "Metric"), h("option", {value: "funnel"}, "Funnel"));
  const name = h("input", {id: "define-name", value: "ad hoc", maxlength: 100});
  const text = h("textarea", {id: "define-yaml", spellcheck: "false"}, "type: people_did_event\nevent: Site visit\n");
  const admin = h("input", {id: "define-admin", type: "password", autocomplete: "off", placeholder: "apps[].admin_token"});
  const out = h("div", {id: "define-result"}), error = h("p", {class: "error", hidden: true});
  const fail = e => { error.textContent = e.message; error.hidden = false; };
  kind.addEventListener("change", () => {
    text.value = kind.value === "funnel" ? "steps: [Site visit, Registration]\nwindow: 1d\n" : "type: people_did_event\nevent: Site visit\n";
  });
  const show = async () => {
    error.hidden = true;
    try {
      const body = JSON.stringify({name: name.value, definition_yaml: text.value});
      const result = await api(app, `/${kind.value}s`, rangeQuery(params), {method: "POST", body});
      out.replaceChildren(...(kind.value === "metric" ? metricView(result, `Metric ${name.value}`) :
                                                        funnelView(app, params, result, `Funnel ${name.value}`, false)));
    } catch (e) { if (e instanceof SignInNeeded) throw e; fail(e); }
  };
  const save = async () => {
    error.hidden = true;
    if (!admin.value) return fail(new Error("Saving needs the app's admin token (apps[].admin_token)."));
    try {
      const body = JSON.stringify({kind: kind.value, name: name.value, definition_yaml: text.value});
      await api(app, "/definitions", null, {method: "POST", body, token: admin.value});
      location.hash = link([app, kind.value + "s", name.value], rangeOf(params));
    } catch (e) { fail(e); }
  };
  return [h("h1", {}, "Define a metric or a funnel"),
    h("div", {class: "panel"}, h("p", {class: "note"}, "The same keys as under apps[].metrics and apps[].funnels in tracktor.yaml (docs/metrics.md)."),
      h("label", {for: "define-kind"}, "Kind"), kind, h("label", {for: "define-name"}, "Name"), name,
      h("label", {for: "define-yaml"}, "Definition (YAML)"), text, error,
      h("div", {class: "buttons"}, h("button", {type: "button", id: "define-show", onclick: () => show().catch(handle)}, "Show")),
      h("label", {for: "define-admin"}, "Admin token (to save it to the app's definitions)"), admin,
      h("div", {class: "buttons"}, h("button", {type: "button", id: "define-save", onclick: save}, "Save"))),
    out];
}

// -- the router -----------------------------------------------------------------------------------
const PAGES = {
  "": {draw: dashboardPage, nav: "dashboard", live: true},
  "metrics/": {draw: metricPage, nav: "dashboard", live: true},
  "funnels/": {draw: funnelPage, nav: "dashboard", live: true, after: fillDrill},
  "people": {draw: peoplePage, nav: "people"},
  "people/": {draw: personPage, nav: "people"},
  "segments": {draw: segmentsPage, nav: "segments", live: true},
  "segments/": {draw: segmentPage, nav: "segments", live: true},
  "define": {draw: definePage, nav: "define", once: true},
};

function handle(e) {
  const {parts} = route();
  shown = null;  // the next successful poll draws the page again
  if (e instanceof SignInNeeded) { clearTimeout(poller); poller = null; generation++; }  // no more polls of this page
  if (e instanceof SignInNeeded) return signIn(parts[0], e.message);
  main().replaceChildren(h("p", {class: "error", id: "page-error"}, e.message));
}

async function render() {
  clearTimeout(poller); poller = null; shown = null;
  const mine = ++generation;
  const {parts, params} = route();
  if (!parts.length) return signIn("", "");
  const [app, what, name] = parts;
  const key = what === undefined ? "" : (name === undefined ? what : what + "/");
  const page = PAGES[key];
  if (!page || parts.length > 3 || parts.includes(null)) return handle(new Error("No such page."));
  drawNav(app, page.nav, params);
  drawRange(params, page.nav !== "people" && page.nav !== "define");
  const draw = async () => {
    const nodes = page.once ? page.draw(app, params) : await page.draw(app, params, name);
    if (mine !== generation) return;  // the address changed while this page was asked for
    const signature = JSON.stringify(nodes.map(n => n && n.outerHTML));
    if (signature !== shown) {
      shown = signature;
      main().replaceChildren(...nodes.filter(Boolean));
      if (page.after) await page.after(app, params, name, () => mine === generation);
    }
    stamp();
  };
  // the next poll is asked for only once this one is answered, and not while the tab is hidden
  const again = () => {
    if (mine !== generation) return;
    poller = setTimeout(async () => {
      if (!document.hidden) {
        try { await draw(); } catch (e) { if (mine === generation) handle(e); }
      }
      again();
    }, REFRESH_MS);
  };
  try {
    await draw();
    if (page.live) again();
  } catch (e) { if (mine === generation) handle(e); }
}

window.addEventListener("hashchange", render);
window.addEventListener("DOMContentLoaded", render);
