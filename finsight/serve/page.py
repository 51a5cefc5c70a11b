"""The page at ``GET /``: paste headlines, see label, probabilities and sentiment as bars, and
each headline's words highlighted by their contribution to its label (``POST /v1/explain``).

One self-contained HTML document (inline CSS and JS, no external assets or fonts), so it works
offline and under a strict Content-Security-Policy of 'self' plus inline.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>finsight</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 52rem; color: #222; padding: 0 1rem; }
  h1 { font-size: 1.3rem; margin-bottom: .2rem; }
  .muted { color: #666; font-size: .85rem; }
  textarea { width: 100%; box-sizing: border-box; font: inherit; padding: .5rem; }
  input { font: inherit; padding: .3rem; width: 18rem; }
  button { font: inherit; padding: .4rem 1.2rem; margin-top: .5rem; cursor: pointer; }
  .result { border-top: 1px solid #ddd; padding: .7rem 0; }
  .text { font-weight: 600; margin-bottom: .3rem; }
  .row { display: flex; align-items: center; gap: .5rem; font-size: .85rem; }
  .row span.name { width: 5.5rem; }
  .row span.value { width: 3.5rem; text-align: right; font-variant-numeric: tabular-nums; }
  .bar { flex: 1; background: #eee; height: .8rem; border-radius: 3px; overflow: hidden; position: relative; }
  .bar i { display: block; height: 100%; }
  .negative i { background: #d9534f; } .neutral i { background: #999; } .positive i { background: #4cae4c; }
  .sentiment .bar i { position: absolute; top: 0; }
  .label { display: inline-block; padding: 0 .4rem; border-radius: 3px; color: #fff; font-size: .8rem; }
  .label.negative { background: #d9534f; } .label.neutral { background: #777; } .label.positive { background: #4cae4c; }
  #error { color: #b00; }
  .text .w { border-radius: 2px; padding: 0 1px; }
  .legend { font-size: .8rem; color: #555; margin: .4rem 0; }
  .legend .w { padding: 0 .3rem; margin-right: .4rem; }
</style>
</head>
<body>
<h1>finsight</h1>
<div class="muted" id="model">financial sentiment</div>
<p><label for="texts">Headlines, one per line</label></p>
<textarea id="texts" rows="5" placeholder="Operating profit rose to EUR 13.1 mn from EUR 8.7 mn."></textarea>
<div><label class="muted" for="key">API key (if the server needs one)</label><br><input id="key" type="password" autocomplete="off"></div>
<button id="score" type="button">Score</button>
<p id="error" role="alert"></p>
<div class="legend" id="legend" data-testid="legend">Words, by contribution to the label (removing the word lowers its probability):
  <span class="w" style="background: rgba(76,174,76,.6)">supports the label</span>
  <span class="w" style="background: rgba(217,83,79,.6)">works against it</span>
  stronger colour, larger share of the strongest word</div>
<div id="results" aria-live="polite"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}
function bar(name, value, cls) {
  const row = el("div", "row " + cls);
  row.dataset.prob = name;
  row.append(el("span", "name", name));
  const track = el("div", "bar"); const fill = el("i");
  fill.style.width = (100 * value).toFixed(1) + "%";
  track.append(fill); row.append(track);
  row.append(el("span", "value", value.toFixed(3)));
  return row;
}
function sentimentBar(value) {
  const row = el("div", "row sentiment");
  row.append(el("span", "name", "sentiment"));
  const track = el("div", "bar"); const fill = el("i");
  const width = Math.abs(value) * 50;
  fill.style.width = width.toFixed(1) + "%";
  fill.style.left = (value < 0 ? 50 - width : 50).toFixed(1) + "%";
  fill.style.background = value < 0 ? "#d9534f" : "#4cae4c";
  track.append(fill); row.append(track);
  row.append(el("span", "value", (value >= 0 ? "+" : "") + value.toFixed(3)));
  return row;
}
function render(texts, results) {
  const box = $("results"); box.replaceChildren();
  results.forEach((r, i) => {
    const item = el("div", "result"); item.dataset.testid = "result";
    item.append(el("div", "text", texts[i]));
    if (r.error) { item.append(el("div", "muted", r.error)); box.append(item); return; }
    const label = el("span", "label " + r.label, r.label); label.dataset.testid = "label";
    const head = el("div"); head.append(label, el("span", "muted", "  confidence " + r.confidence.toFixed(3)));
    item.append(head);
    for (const name of ["negative", "neutral", "positive"]) item.append(bar(name, r.probabilities[name], name));
    const s = sentimentBar(r.sentiment); s.dataset.testid = "sentiment"; s.dataset.value = r.sentiment;
    item.append(s);
    box.append(item);
  });
}
function highlight(node, explained) {
  // The explained (cleaned) text, each word on a background by its signed contribution.
  const strongest = Math.max(1e-9, ...explained.words.map((w) => Math.abs(w.contribution)));
  const text = explained.text; let cursor = 0;
  node.replaceChildren();
  for (const w of explained.words) {
    node.append(text.slice(cursor, w.start));
    const span = el("span", "w", text.slice(w.start, w.end));
    const alpha = (0.6 * Math.abs(w.contribution) / strongest).toFixed(3);
    span.style.background = (w.contribution >= 0 ? "rgba(76,174,76," : "rgba(217,83,79,") + alpha + ")";
    span.dataset.testid = "word"; span.dataset.contribution = w.contribution;
    span.title = (w.contribution >= 0 ? "+" : "") + w.contribution.toFixed(4) + " p(" + explained.label + ")";
    node.append(span); cursor = w.end;
  }
  node.append(text.slice(cursor));
  node.dataset.explained = "1";
}
async function explainAll(texts, results, headers) {
  const items = document.querySelectorAll("[data-testid=result]");
  await Promise.all(results.map(async (r, i) => {
    if (r.error) return;
    const response = await fetch("v1/explain", { method: "POST", headers, body: JSON.stringify({ text: texts[i] }) });
    if (response.ok) highlight(items[i].querySelector(".text"), await response.json());
  }));
}
async function score() {
  $("error").textContent = "";
  const texts = $("texts").value.split("\\n").map((t) => t.trim()).filter((t) => t);
  if (!texts.length) { $("error").textContent = "type at least one headline"; return; }
  const headers = { "Content-Type": "application/json" };
  if ($("key").value) headers["X-API-Key"] = $("key").value;
  try {
    const response = await fetch("v1/predict/batch", { method: "POST", headers, body: JSON.stringify({ texts }) });
    const body = await response.json();
    if (!response.ok) { $("error").textContent = response.status + ": " + (body.detail || "request failed"); return; }
    $("model").textContent = "model " + body.model.name + " (" + body.model.version + ")";
    render(texts, body.results);
    await explainAll(texts, body.results, headers);
  } catch (err) { $("error").textContent = String(err); }
}
$("score").addEventListener("click", score);
$("texts").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) score(); });
</script>
</body>
</html>
"""
