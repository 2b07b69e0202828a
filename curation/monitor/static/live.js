// The live page: polls /api/state and redraws. Everything from the data (prompts, thinkings,
// reasons) is set as text, never parsed as HTML.
"use strict";

const POLL_MS = 1000;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    if (cell instanceof Node) { const td = el("td"); td.appendChild(cell); tr.appendChild(td); }
    else tr.appendChild(el("td", cell === null || cell === undefined ? "—" : cell));
  }
  return tr;
}

function fill(id, rows) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren(...rows);
}

function num(x, digits) {
  if (x === null || x === undefined) return "—";
  return digits === undefined ? String(x) : Number(x).toFixed(digits);
}

function card(t, reject) {
  const box = el("div", null, "card");
  box.dataset.sample = t.sample_id;
  box.appendChild(el("div", `${t.sample_id.slice(0, 12)}… ${t.modes.join(", ")}`, "label"));
  if (reject) {
    box.appendChild(el("div", `${reject.reason}${reject.transient ? " (transient: retried next run)" : ""}`, "reason"));
    if (reject.detail) box.appendChild(el("div", reject.detail, "text"));
  }
  const pics = el("div");
  for (const [name, file] of Object.entries(t.images)) {
    const img = el("img");
    img.src = `images/${file}`;
    img.alt = name;
    img.title = name;
    img.loading = "lazy";
    pics.appendChild(img);
  }
  box.appendChild(pics);
  for (const [name, text] of Object.entries(t.texts)) {
    box.appendChild(el("div", name, "label"));
    box.appendChild(el("div", text, "text"));
  }
  return box;
}

function draw(s) {
  document.getElementById("phase").textContent = s.phase;
  document.getElementById("elapsed").textContent = num(s.elapsed_s, 0);
  document.getElementById("executor").textContent = s.executor;
  document.getElementById("samples-done").textContent = s.samples_done;
  document.getElementById("tokens").textContent = num(s.teacher_tokens_per_s, 1);

  fill("stages", Object.entries(s.stages).map(([name, c]) => {
    const tr = row([name, c.done, c.total, num(c.rate_per_s, 2), c.eta_s === null ? "—" : `${num(c.eta_s, 0)} s`,
                    c.cached, c.rejected, c.skipped, c.in_flight]);
    tr.dataset.stage = name;
    tr.dataset.done = c.done;
    return tr;
  }));

  document.getElementById("modes-note").textContent = s.modes_final
    ? "final: as emitted (duplicates and schema check applied)"
    : (s.outcomes_known ? "provisional: emit still removes duplicates and checks the schema"
                        : "per-mode counts are known after emit under this executor");
  fill("modes", Object.entries(s.modes).map(([mode, m]) => {
    const seen = m.accepted + m.rejected;
    const reasons = m.top_reasons.map(([r, n]) => `${r} ${n}`).join(", ") || "—";
    const tr = row([mode, m.requested, m.accepted, m.rejected, seen ? `${(100 * m.accepted / seen).toFixed(1)}%` : "—",
                    reasons]);
    tr.lastChild.className = "text";
    tr.dataset.mode = mode;
    return tr;
  }));

  const g = s.gpu;
  document.getElementById("gpu-note").textContent = g.simulated
    ? `${g.total.basis}: the offline world runs no GPU (per-call estimates)` : "measured";
  const gpuRows = Object.entries(g.roles).map(([role, r]) => {
    const tr = row([role, r.basis, num(r.gpu_s, 1), num(r.per_1k_accepted, 3), r.assumption]);
    tr.lastChild.className = "text";
    return tr;
  });
  gpuRows.push(row(["total", g.total.basis, num(g.total.gpu_s, 1),
                    num(g.total.per_1k_accepted, 3), g.total.assumption]));
  fill("gpu", gpuRows);
  document.getElementById("projection").textContent = g.total.projected_gpu_hours === null ? ""
    : `Projected for the requested ${g.requested_rows} rows: ${num(g.total.projected_gpu_hours, 1)} GPU-hours` +
      `${g.simulated ? ` (${g.total.basis})` : ""} at the rate so far over ${g.accepted_rows} accepted rows` +
      `${s.modes_final ? "" : " (provisional)"}.`;

  fill("failures", s.failures.map(f => row([f.stage, f.reason, f.class, f.count])));
  fill("backends", Object.entries(s.accounting).map(([role, acc]) => {
    const text = Object.entries(acc).filter(([, v]) => v !== null).map(([k, v]) => `${k} ${v}`).join(", ");
    const tr = row([role, text]);
    tr.lastChild.className = "text";
    return tr;
  }));
  document.getElementById("accepted").replaceChildren(...s.accepted_recent.map(t => card(t)));
  document.getElementById("rejected").replaceChildren(...s.rejected_recent.map(t => card(t, t)));
}

async function poll() {
  const error = document.getElementById("error");
  try {
    const response = await fetch("api/state", {cache: "no-store"});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    draw(await response.json());
    error.hidden = true;
  } catch (e) {
    error.textContent = `no answer from the run (${e.message}): it may have finished`;
    error.hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

poll();
