// The gateway's page: one state document from /api/stream (server-sent events), drawn with DOM
// calls only (text nodes only, never parsed markup: instance names and TXT come from the network).
"use strict";

const token = new URLSearchParams(location.search).get("token");
const withToken = (url) =>
  token ? url + (url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(token) : url;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function table(headers, rows, attrs) {
  return el("div", { class: "scroll" },
    el("table", attrs || {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows)));
}

function ago(now, t) {
  if (t === null || t === undefined) return "–";
  const s = Math.max(0, Math.round(now - t));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return Math.round(s / 3600) + " h ago";
  return Math.round(s / 86400) + " d ago";
}

function ttl(v) { return v === null || v === undefined ? "pinned" : Math.round(v) + " s"; }

function replace(id, ...nodes) { document.getElementById(id).replaceChildren(...nodes); }

function vlanCard(name, info, svc, top, now) {
  const rows = svc.services.map((s) =>
    el("tr", { "data-instance": s.instance, "data-type": s.type },
      el("td", {}, el("code", {}, s.type)),
      el("td", {}, s.instance),
      el("td", {}, s.host || "–"),
      el("td", {}, s.addresses.join(", ") || "–"),
      el("td", { class: "num" }, s.port === null ? "–" : s.port),
      el("td", { class: "txt" }, s.txt.join(" ")),
      el("td", {}, ago(now, s.first_seen)),
      el("td", { class: "num" }, ttl(s.ttl_left))));
  const more = svc.total > svc.services.length
    ? el("p", { class: "muted" }, `${svc.services.length} of ${svc.total} shown`) : null;
  const hostRows = svc.hosts.map((h) => el("tr", {}, el("td", {}, h.host), el("td", {}, h.addresses.join(", "))));
  const adv = top.advertisers.map((a) => el("tr", {}, el("td", {}, a.source), el("td", { class: "num" }, a.records)));
  const asked = top.queried.map((q) => el("tr", {}, el("td", {}, q.name), el("td", { class: "num" }, q.queries)));
  const refused = Object.entries(info.refused_records).map(([r, n]) => `${r}: ${n}`).join(", ");
  return el("div", { class: "card vlan", id: "vlan-" + name, "data-vlan": name },
    el("h3", {}, name, " ",
      el("span", { class: info.up ? "yes" : "no" }, info.up ? "up" : "down"),
      el("span", { class: "muted" }, ` ${info.interface} · ${info.subnets.join(", ") || "no address"} · ${info.domain}`)),
    svc.services.length
      ? table(["Type", "Instance", "Host", "Addresses", "Port", "TXT", "First seen", "TTL left"], rows,
          { class: "services" })
      : el("p", { class: "muted empty" }, "no services announced on this VLAN"),
    more,
    el("div", { class: "cols" },
      el("div", {}, el("h3", {}, "Hosts"), hostRows.length ? table(["Host", "Addresses"], hostRows) : el("p", { class: "muted" }, "none")),
      el("div", {}, el("h3", {}, "Top advertisers"), adv.length ? table(["Source", "Records"], adv) : el("p", { class: "muted" }, "none")),
      el("div", {}, el("h3", {}, "Top queried names"), asked.length ? table(["Name", "Queries"], asked) : el("p", { class: "muted" }, "none"))),
    refused ? el("p", { class: "muted" }, "records refused: " + refused) : null);
}

async function explain(view, vlan, type) {
  const box = document.getElementById("explanation");
  box.hidden = false;
  document.getElementById("explanation-title").textContent =
    `Why does view ${view} ${"see"} ${type} from VLAN ${vlan}?`;
  const q = new URLSearchParams({ view, vlan, service: type });
  try {
    const r = await fetch(withToken("api/explain/live?" + q));
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    const w = body.vlans[0];
    const held = w.held.length
      ? w.held.map((h) => `  ${h.instance} (last announced ${h.last_seen_ago} s ago, TTL left ${ttl(h.ttl_left)})`).join("\n")
      : "  none: nothing of this type is announced there now";
    document.getElementById("explanation-text").textContent =
      w.reasons.join("\n") + `\n\nheld on ${vlan}:\n${held}\nreflected by the reflector: ${w.reflected ? "yes" : "no"}`;
  } catch (e) {
    document.getElementById("explanation-text").textContent = "cannot explain: " + e.message;
  }
  box.scrollIntoView({ block: "nearest" });
}

function matrixTables(m) {
  if (!m.types.length) return [el("p", { class: "muted" }, "no service types yet")];
  const cell = {};
  for (const c of m.cells) cell[`${c.view}|${c.vlan}|${c.type}`] = c;
  return m.types.map((t) => el("div", { class: "card", "data-type": t },
    el("h3", {}, el("code", {}, t)),
    table(["view \\ from VLAN", ...m.vlans], m.views.map((view) =>
      el("tr", {}, el("th", {}, view), m.vlans.map((vlan) => {
        const c = cell[`${view}|${vlan}|${t}`];
        return el("td", { class: "cell " + (c.visible ? "yes" : "no"), "data-view": view, "data-vlan": vlan,
            "data-type": t, "data-visible": String(c.visible), "data-decided-by": c.decided_by },
          el("a", { href: `#explain`, onclick: (e) => { e.preventDefault(); explain(view, vlan, t); } },
            (c.visible ? "✔ " : "✘ ") + c.decided_by),
          c.reflect ? el("span", { class: "muted" }, " · reflected") : null);
      }))), { class: "matrix" })));
}

function reflectionTable(r) {
  if (!r.enabled) return el("p", { class: "muted" }, "the reflector is off (reflector: {enabled: true} turns it on)");
  const cols = ["reflected", "filtered", "rate_limited", "duplicate"];
  const rows = r.directions.map((d) => {
    const other = Object.entries(d.outcomes).filter(([k]) => !cols.includes(k)).map(([k, n]) => `${k}: ${n}`).join(", ");
    return el("tr", {}, el("td", {}, d.from + " → " + d.to),
      cols.map((k) => el("td", { class: "num" }, d.outcomes[k] || 0)), el("td", { class: "muted" }, other));
  });
  return rows.length ? table(["Direction", "Reflected", "Filtered", "Rate-limited", "Duplicates", "Other"], rows)
    : el("p", { class: "muted" }, "nothing reflected yet");
}

function chronyTable(c) {
  if (!c.enabled) return el("p", { class: "muted" }, "no chrony section: no NTP service is advertised");
  return table(["Server", "Health", "Offset", "Stratum", "Advertised"], c.servers.map((s) =>
    el("tr", {}, el("td", {}, s.name),
      el("td", { class: s.healthy ? "yes" : "no" }, s.healthy ? "healthy" : `${s.reason}: ${s.detail}`),
      el("td", { class: "num" }, s.offset === null ? "–" : (s.offset * 1000).toFixed(3) + " ms"),
      el("td", { class: "num" }, s.stratum === null ? "–" : s.stratum),
      el("td", {}, s.advertised ? "yes: " + s.advertised_on.join(", ") : "no"))));
}

function policiesView(p) {
  return [
    el("p", {}, el("strong", { class: p.valid ? "yes" : "no" }, p.valid ? "valid" : "rejected"),
      ` · ${p.policies.length} in force · ${p.rejections} rejected set(s) since start`),
    p.error ? el("pre", { class: "error" }, p.error) : null,
    p.policies.length ? table(["Name", "Action", "Source"], p.policies.map((x) =>
      el("tr", {}, el("td", {}, x.name), el("td", {}, x.action), el("td", { class: "muted" }, x.source))))
      : el("p", { class: "muted" }, "no policies: every VLAN sees only its own services"),
  ];
}

function eventsList(events, now) {
  if (!events.length) return el("p", { class: "muted" }, "nothing yet");
  return el("ul", { class: "events" }, events.map((e) =>
    el("li", { "data-kind": e.kind }, el("span", { class: "kind" }, e.kind), " ",
      el("span", { class: "muted" }, `${ago(now, e.at)} · ${e.vlan || "-"} · `), e.text)));
}

function render(s) {
  const names = Object.keys(s.vlans);
  const count = names.reduce((n, v) => n + s.services[v].total, 0);
  document.getElementById("summary").textContent =
    `${names.length} VLAN(s) · ${count} service(s) · ${s.records} record(s) · ${s.ready ? "ready" : "starting"}`;
  replace("vlan-list", ...names.map((v) => vlanCard(v, s.vlans[v], s.services[v], s.top[v], s.now)));
  replace("matrix-body", ...matrixTables(s.matrix));
  replace("reflection-body", reflectionTable(s.reflection));
  replace("chrony-body", chronyTable(s.chrony));
  replace("policies-body", ...policiesView(s.policies));
  replace("events-body", eventsList(s.events, s.now));
}

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource(withToken("api/stream"));
  source.addEventListener("state", (e) => {
    status.textContent = "live";
    status.className = "badge live";
    render(JSON.parse(e.data));
  });
  source.onerror = () => {
    status.textContent = "disconnected, retrying…";
    status.className = "badge down";
  };
}

connect();
