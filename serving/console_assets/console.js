"use strict";
// The console talks to the JSON API only, with the key typed in the header (kept for this tab's session).
const TERMS = ["neighbours", "same_task_neighbours", "task", "user", "overall", "residual"];
const COLOURS = ["#3b73c4", "#7aa6e0", "#e39b2d", "#9b59b6", "#7f8c8d", "#c0392b"];
const $ = (id) => document.getElementById(id);
const keyInput = $("key");
keyInput.value = sessionStorage.getItem("graphroute-key") || "";
keyInput.addEventListener("change", () => { sessionStorage.setItem("graphroute-key", keyInput.value); refreshAll(); });

async function api(path, options = {}) {
  const headers = { "content-type": "application/json" };
  if (keyInput.value) headers.authorization = "Bearer " + keyInput.value;
  const response = await fetch(path, { ...options, headers });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = body.detail || (body.error && body.error.message) || response.statusText;
    throw new Error(`${response.status}: ${typeof detail === "string" ? detail : JSON.stringify(detail)}`);
  }
  return body;
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const signed = (x, digits = 3) => {
  const text = (x >= 0 ? "+" : "") + Number(x).toFixed(digits);
  return `<span class="${x >= 0 ? "pos" : "neg"}">${text}</span>`;
};
const dollars = (x) => (x === null || x === undefined ? "–" : "$" + Number(x).toPrecision(3));
const escape = (text) => String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
function table(element, head, rows) {
  element.innerHTML = `<tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr>` + rows.join("");
}

function termsBar(terms) {
  // each term's share of the sum of absolute contributions, in the term colours
  const total = TERMS.reduce((s, t) => s + Math.abs(terms[t]), 0) || 1;
  const parts = TERMS.map((t, i) =>
    `<span title="${t} ${Number(terms[t]).toFixed(3)}" style="width:${(100 * Math.abs(terms[t])) / total}%;background:${COLOURS[i]};opacity:${terms[t] >= 0 ? 1 : 0.45}"></span>`);
  return `<span class="bar">${parts.join("")}</span>`;
}

$("own-alpha").addEventListener("change", (e) => { $("alpha").disabled = e.target.checked; });
$("alpha").addEventListener("input", (e) => { $("alpha-value").textContent = Number(e.target.value).toFixed(2); });

$("route-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("route-error").textContent = "";
  const body = { query: $("query").value, k: 64, explain: true };
  if ($("user").value) body.user_id = $("user").value;
  if ($("task").value) body.task = $("task").value;
  if (!$("own-alpha").checked) body.alpha = Number($("alpha").value);
  if ($("budget").value) body.max_cost = Number($("budget").value);
  try {
    showExplanation(await api("/v1/route", { method: "POST", body: JSON.stringify(body) }));
  } catch (err) {
    $("route-error").textContent = err.message;
  }
});

function showExplanation(answer) {
  const ex = answer.explanation;
  const task = ex.task_inferred ? `${ex.task} (inferred${ex.task_given ? " for “" + escape(ex.task_given) + "”" : ""})` : ex.task;
  const trust = ex.task_trust < 1 ? `, its evidence trusted ${fmt(ex.task_trust, 2)}` : "";
  const legend = TERMS.map((t, i) => `<span class="key" style="background:${COLOURS[i]}"></span>${t.replaceAll("_", " ")}`).join("");
  $("route-summary").innerHTML =
    `<p>Routed to <b id="chosen">${escape(answer.llm)}</b> for user <b>${escape(ex.user_id)}</b> at alpha ${fmt(ex.alpha, 2)};` +
    ` task ${escape(task)}${trust}. Model ${escape(answer.model_version)}.</p>` +
    (ex.explains_effect ? `<p class="legend">${legend}</p>` : `<p class="legend">${escape(ex.note)}</p>`);
  const head = ["rank", "LLM", "utility", "= quality", "+ cost", "+ affinity", "effect", "cost"];
  if (ex.explains_effect) head.push("effect logit", ...TERMS.map((t) => t.replaceAll("_", " ")), "probe", "evidence");
  const rows = ex.ranking.map((r) => {
    let cells = [r.rank, escape(r.llm), fmt(r.utility), signed(r.quality), signed(r.cost), signed(r.affinity), fmt(r.effect), dollars(r.cost_usd)];
    if (ex.explains_effect) {
      cells = cells.concat([signed(r.effect_logit, 2), ...TERMS.map((t) => signed(r.effect_terms[t], 2)), signed(r.probe_shift), termsBar(r.effect_terms)]);
    }
    return `<tr class="rank-row${r.rank === 1 ? " top" : ""}">${cells.map((c) => `<td>${c}</td>`).join("")}</tr>`;
  });
  table($("ranking"), head, rows);
  const names = ex.ranking.map((r) => r.llm);
  table($("neighbours"), ["similarity", "task", "query", ...names.map(escape)], ex.neighbours.map((n) =>
    `<tr class="neighbour-row"><td>${fmt(n.similarity)}</td><td>${escape(n.task)}</td><td class="text">${escape(n.query)}</td>` +
    names.map((l) => `<td>${n.effects[l] === undefined ? "" : fmt(n.effects[l], 2)}</td>`).join("") + "</tr>"));
}

async function loadTraffic() {
  $("traffic-error").textContent = "";
  try {
    const t = await api(`/v1/traffic?window=${$("window").value}`);
    const rows = t.llms.map((l) => `<tr class="traffic-row"><td>${escape(l.llm)}</td><td>${l.routes}</td>` +
      `<td><span class="share" style="width:${Math.round(120 * l.share)}px"></span> ${fmt(100 * l.share, 1)} %</td>` +
      `<td>${fmt(l.predicted_effect)}</td><td>${l.outcomes}</td><td>${fmt(l.observed_effect)}</td>` +
      `<td>${dollars(l.predicted_spend)}</td><td>${dollars(l.reported_spend)}</td></tr>`);
    table($("traffic"), ["LLM", "routes", "share", "predicted effect", "outcomes", "observed effect", "predicted spend", "reported spend"], rows);
  } catch (err) { $("traffic-error").textContent = err.message; }
}

async function loadUsers() {
  $("users-error").textContent = "";
  try {
    const users = await api("/v1/users?limit=200");
    table($("users"), ["user", "interactions", "choices", "fitted alpha", "leans towards", "leans away from"], users.map((u) => {
      const sorted = Object.entries(u.affinity).sort((a, b) => b[1] - a[1]);
      const top = sorted.filter(([, v]) => v > 0).slice(0, 2).map(([k, v]) => `${escape(k)} ${signed(v, 2)}`).join(", ");
      const bottom = sorted.filter(([, v]) => v < 0).slice(-2).map(([k, v]) => `${escape(k)} ${signed(v, 2)}`).join(", ");
      return `<tr class="user-row"><td>${escape(u.user_id)}</td><td>${u.interactions}</td><td>${u.n_choices}</td><td>${fmt(u.alpha, 2)}</td><td>${top}</td><td>${bottom}</td></tr>`;
    }));
  } catch (err) { $("users-error").textContent = err.message; }
}

async function loadCatalog() {
  $("catalog-error").textContent = "";
  try {
    const llms = await api("/v1/llms");
    table($("catalog"), ["LLM", "description", "$ in / 1M", "$ out / 1M", "routable", ""], llms.map((m) =>
      `<tr class="llm-row"><td>${escape(m.name)}</td><td class="text">${escape(m.description)}</td><td>${fmt(m.input_price, 2)}</td>` +
      `<td>${fmt(m.output_price, 2)}</td><td>${m.enabled ? "yes" : "no"}</td>` +
      `<td><button class="toggle" data-llm="${escape(m.name)}" data-enable="${!m.enabled}">${m.enabled ? "disable" : "enable"}</button></td></tr>`));
  } catch (err) { $("catalog-error").textContent = err.message; }
}

$("catalog").addEventListener("click", async (event) => {
  const button = event.target.closest("button.toggle");
  if (!button) return;
  try {
    await api(`/v1/llms/${encodeURIComponent(button.dataset.llm)}/disable?enabled=${button.dataset.enable}`, { method: "POST" });
    await loadCatalog();
  } catch (err) { $("catalog-error").textContent = err.message; }
});

$("traffic-btn").addEventListener("click", loadTraffic);
$("window").addEventListener("change", loadTraffic);
$("users-btn").addEventListener("click", loadUsers);
$("catalog-btn").addEventListener("click", loadCatalog);
document.querySelectorAll("nav button").forEach((button) => button.addEventListener("click", () => {
  document.querySelectorAll("nav button, .tab").forEach((e) => e.classList.remove("active"));
  button.classList.add("active");
  $("tab-" + button.dataset.tab).classList.add("active");
  ({ traffic: loadTraffic, users: loadUsers, catalog: loadCatalog })[button.dataset.tab]?.();
}));

async function refreshAll() {
  try {
    const ready = await api("/readyz");
    $("status").textContent = `${ready.model_version} · ${ready.llms} LLMs routable`;
  } catch (err) { $("status").textContent = "not ready: " + err.message; }
}
refreshAll();
