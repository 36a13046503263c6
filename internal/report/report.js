// Draws the report from the JSON in #data. Tables hold their rows in
// memory and put only one page of them in the document, so sorting,
// filtering and paging stay quick with tens of thousands of rows.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("data").textContent);
  const app = document.getElementById("app");

  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "class") e.className = v; else e.setAttribute(k, v);
    }
    for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return e;
  }

  // Addresses sort numerically: IPv4 before IPv6, each by value.
  function addrKey(a) {
    if (a.includes(":")) {
      let parts = a.split("::");
      const head = parts[0] ? parts[0].split(":") : [];
      const tail = parts.length > 1 && parts[1] ? parts[1].split(":") : [];
      const groups = head.concat(Array(8 - head.length - tail.length).fill("0"), tail);
      return "6" + groups.map(g => g.padStart(4, "0")).join("");
    }
    return "4" + a.split(".").map(o => o.padStart(3, "0")).join("");
  }

  // table makes a sortable, filterable, paged table. cols: {name, key(row),
  // num, cell(row) -> Node|string, cls}.
  function table(id, cols, rows, opts) {
    opts = opts || {};
    const pageSize = opts.pageSize || 100;
    let view = rows.slice(), page = 0, sortCol = -1, dir = 1;
    const filter = el("input", {type: "search", placeholder: opts.placeholder || "filter", id: id + "-filter"});
    const prev = el("button", {id: id + "-prev"}, "previous"), next = el("button", {id: id + "-next"}, "next");
    const info = el("span", {class: "pager", id: id + "-pager"});
    const thead = el("tr");
    const tbody = el("tbody");
    const t = el("table", {class: opts.cls || "", id: id + "-table"}, el("thead", {}, thead), tbody);
    cols.forEach((c, i) => {
      const th = el("th", {class: (c.num ? "num " : "") + (c.hcls || "")}, c.name);
      if (!c.nosort) th.addEventListener("click", () => { dir = sortCol === i ? -dir : 1; sortCol = i; apply(); });
      thead.append(th);
    });
    function apply() {
      const q = filter.value.trim().toLowerCase();
      view = q ? rows.filter(r => cols.some(c => !c.nofilter && String(c.key(r)).toLowerCase().includes(q))) : rows.slice();
      if (sortCol >= 0) {
        const c = cols[sortCol], k = c.sortKey || c.key;
        view.sort((a, b) => { const x = k(a), y = k(b); return (x < y ? -1 : x > y ? 1 : 0) * dir; });
      }
      [...thead.children].forEach((th, i) => { th.classList.toggle("asc", i === sortCol && dir > 0); th.classList.toggle("desc", i === sortCol && dir < 0); });
      page = 0;
      draw();
    }
    function draw() {
      const pages = Math.max(1, Math.ceil(view.length / pageSize));
      page = Math.min(page, pages - 1);
      const frag = document.createDocumentFragment();
      for (const r of view.slice(page * pageSize, (page + 1) * pageSize)) {
        const tr = el("tr");
        for (const c of cols) {
          const v = c.cell ? c.cell(r) : c.key(r);
          const td = el("td", {class: (c.num ? "num " : "") + (typeof c.cls === "function" ? c.cls(r) : c.cls || "")});
          td.append(v instanceof Node ? v : document.createTextNode(String(v)));
          tr.append(td);
        }
        frag.append(tr);
      }
      tbody.replaceChildren(frag);
      info.textContent = `${view.length} of ${rows.length} rows, page ${page + 1} of ${pages}`;
      prev.disabled = page === 0;
      next.disabled = page >= pages - 1;
    }
    filter.addEventListener("input", apply);
    prev.addEventListener("click", () => { page--; draw(); });
    next.addEventListener("click", () => { page++; draw(); });
    if (opts.sort !== undefined) { sortCol = opts.sort; }
    apply();
    return el("div", {class: "panel", id: id}, el("div", {class: "tools"}, filter, prev, next, info), t);
  }

  const s = data.scan, n = data.counts;
  app.replaceChildren();
  document.title = data.title;
  app.append(el("h1", {}, data.title));
  app.append(el("p", {class: "sub"}, `${s.prober || "scan"} of ports ${s.ports} · started ${s.started} · took ${s.duration} · ${s.status}`));
  const card = (v, label) => el("div", {class: "card"}, el("b", {}, v), el("span", {}, label));
  const cards = el("div", {class: "cards", id: "summary"},
    card(n.hosts, "hosts scanned"), card(n.hosts_up, "hosts up"), card(n.open, "open ports"),
    card(n.open_ports, "distinct open ports"), card(n.closed, "closed"), card(n.filtered, "filtered"),
    card(n.with_banner, "banners"));
  if (data.diff) {
    const d = data.diff.summary;
    cards.append(card(d.hosts_appeared + d.hosts_vanished + d.ports_added + d.ports_removed + d.state_changes + d.service_changes,
      `changes since scan ${data.diff.a}`));
  }
  app.append(el("h2", {}, "Summary"), cards);

  // Changes since the previous scan.
  app.append(el("h2", {}, "Changes"));
  if (!data.diff) {
    app.append(el("p", {class: "sub", id: "changes"}, "No earlier scan of these targets to compare with."));
  } else if (data.diff.rows.length === 0) {
    app.append(el("p", {class: "sub", id: "changes"}, `Nothing changed since scan ${data.diff.a} (${data.diff.a_started}).`));
  } else {
    app.append(el("p", {class: "sub"}, `Against scan ${data.diff.a} (${data.diff.a_started}).`));
    app.append(table("changes", [
      {name: "change", key: r => r[0], cls: r => "k-" + r[0]},
      {name: "host", key: r => r[1], sortKey: r => addrKey(r[1])},
      {name: "port", key: r => r[2], sortKey: r => parseInt(r[2] || "0", 10)},
      {name: "before", key: r => r[3]},
      {name: "after", key: r => r[4]},
    ], data.diff.rows, {placeholder: "filter changes"}));
  }

  // Host x port grid.
  app.append(el("h2", {}, "Hosts and ports"));
  const legend = el("div", {class: "legend"});
  for (const [c, label] of [["o", "open"], ["c", "closed"], ["f", "filtered"], ["F", "open|filtered"], ["u", "other"], ["-", "not scanned"]]) {
    legend.append(el("span", {}, el("i", {class: "s-" + c, style: `background: var(--${{o: "open", c: "closed", f: "filtered", F: "openfiltered", u: "other", "-": "none"}[c]})`}), label));
  }
  app.append(legend);
  if (data.truncated > 0) app.append(el("p", {class: "sub"}, `${data.truncated} more ports with answers are in the services table below.`));
  const names = {o: "open", c: "closed", f: "filtered", F: "open|filtered", u: "unfiltered", x: "closed|filtered", "-": "not scanned"};
  const gridCols = [
    {name: "host", key: r => r[1] ? `${r[1]} (${r[0]})` : r[0], sortKey: r => addrKey(r[0])},
    {name: "up", key: r => r[2] ? "up" : "down"},
    {name: "open", key: r => r[3], num: true},
    {name: "closed", key: r => r[4], num: true},
    {name: "filtered", key: r => r[5], num: true},
  ];
  data.ports.forEach((p, i) => gridCols.push({
    name: p, hcls: "port", nosort: true, nofilter: true, key: r => r[7][i], cls: r => "c s-" + r[7][i],
    cell: r => { const sp = el("span", {title: `${r[0]} ${p} ${names[r[7][i]]}`}); return sp; },
  }));
  app.append(table("grid", gridCols, data.hosts, {cls: "grid", placeholder: "filter hosts", sort: 0}));

  // Services.
  app.append(el("h2", {}, "Services"));
  app.append(table("services", [
    {name: "host", key: r => r[0], sortKey: r => addrKey(r[0])},
    {name: "port", key: r => `${r[1]}/${r[2]}`, sortKey: r => r[1]},
    {name: "state", key: r => r[3], cls: r => "state-" + r[3].replace("|", "-")},
    {name: "service", key: r => r[4]},
    {name: "version", key: r => r[5]},
    {name: "banner", key: r => r[6], cls: "banner"},
  ], data.services, {placeholder: "filter services, versions, banners", sort: 0}));

  app.append(el("footer", {}, `${data.tool} · generated ${data.generated} · ${s.command}`));
  document.body.dataset.ready = "1";
})();
