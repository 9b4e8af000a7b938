"use strict";
// "Try a task" on a model's page: a support set (images per label, or rows), adapt, then queries.

function nest(flat, shape) {
  if (shape.length <= 1) return flat;
  const step = shape.slice(1).reduce((a, b) => a * b, 1);
  return Array.from({ length: shape[0] }, (_, i) => nest(flat.slice(i * step, (i + 1) * step), shape.slice(1)));
}

function parseRows(text) {
  return text.split("\n").map((line) => line.trim()).filter((line) => line && !line.startsWith("#"))
    .map((line) => line.split(/[\s,;]+/).filter(Boolean));
}

function curlFor(method, path, body) {
  const auth = api.key() ? ` \\\n  -H "Authorization: Bearer $FEWSHOT_API_KEY"` : "";
  return `curl -s -X ${method} ${location.origin}${path}${auth} \\\n  -H 'content-type: application/json' \\\n  -d '${JSON.stringify(body)}'`;
}

function probabilityBars(labels, probabilities) {
  if (!probabilities || !labels) return null;
  return h("div", {}, labels.map((label, i) => ({ label, p: probabilities[i] })).sort((a, b) => b.p - a.p).map(({ label, p }) =>
    h("div", { class: "bar" }, h("span", { class: "lbl", text: String(label) }),
      h("span", { class: "fill", style: `width:${Math.max(1, Math.round(p * 120))}px` }), h("span", { text: p.toFixed(3) }))));
}

function tryPanel(model) {
  const images = model.accepts_images;
  const classification = model.output === "classification";
  const featureCount = model.input_shape.reduce((a, b) => a * b, 1);
  const state = { task: null, support: null };
  const status = h("p", { role: "status", id: "try-status" });
  const curl = h("pre", { id: "try-curl" });
  const results = h("div", { id: "predictions", "aria-live": "polite" });
  const supportBox = h("div", { id: "support" });
  const queryBox = h("div", { id: "queries" });
  const rows = [];

  // The support set: one row per label with its images, or pasted rows.
  if (images && classification) {
    const ways = model.ways || 2;
    const names = Array.from({ length: ways }, (_, i) => String.fromCharCode(97 + (i % 26)) + (i >= 26 ? i : ""));
    for (let i = 0; i < ways; i++) {
      const row = { label: h("input", { value: names[i], "aria-label": `label ${i + 1}`, size: 8, class: "support-label" }), images: [] };
      const thumbs = h("span", { class: "thumbs" });
      const zone = dropZone("Drop images for this label or", "image/png,image/jpeg", async (files) => {
        for (const file of files) {
          const image = await readImage(file);
          row.images.push(image);
          thumbs.append(h("img", { src: image.url, alt: `${row.label.value}: ${file.name}` }));
        }
      }, { class: "drop support-drop", "data-row": String(i) });
      zone.append(" ", thumbs);
      rows.push(row);
      supportBox.append(h("div", { class: "support-row" }, row.label, zone));
    }
  } else {
    const hint = classification ? `one example per line: ${featureCount} numbers, then its label`
      : `one example per line: ${featureCount} numbers, then ${model.output_dim || 1} target number(s)`;
    supportBox.append(h("label", { for: "support-rows", text: `Support set (${hint})` }), h("textarea", { id: "support-rows" }));
  }

  const collectSupport = () => {
    if (images && classification) {
      const inputs = [], labels = [];
      for (const row of rows) for (const image of row.images) { inputs.push(image.b64); labels.push(row.label.value); }
      if (!inputs.length) throw new Error("drop at least one image for some label first");
      return { inputs, labels };
    }
    const targets = classification ? 1 : (model.output_dim || 1);
    const parsed = parseRows(document.getElementById("support-rows").value);
    if (!parsed.length) throw new Error("paste at least one support row");
    const inputs = [], labels = [];
    parsed.forEach((cells, n) => {
      if (cells.length !== featureCount + targets) throw new Error(`row ${n + 1} has ${cells.length} values; expected ${featureCount + targets}`);
      inputs.push(nest(cells.slice(0, featureCount).map(Number), model.input_shape));
      const target = cells.slice(featureCount);
      labels.push(classification ? (/^-?\d+$/.test(target[0]) ? Number(target[0]) : target[0])
        : (targets === 1 ? Number(target[0]) : target.map(Number)));
    });
    return { inputs, labels };
  };

  const adapt = h("button", { type: "button", class: "primary", id: "adapt", onclick: async () => {
    status.className = ""; status.textContent = "Adapting…"; adapt.disabled = true;
    try {
      const support = collectSupport();
      const path = `/v1/models/${model.id}/tasks`;
      state.task = await api.post(path, { support }, { "Idempotency-Key": api.idempotencyKey() });
      status.className = "ok";
      status.replaceChildren(`Task `, h("span", { class: "mono", text: state.task.id }), ` ${state.task.status}: labels ${fmt(state.task.labels)}`);
      curl.textContent = curlFor("POST", path, { support });
      predictBox.hidden = false;
    } catch (err) {
      status.className = "error"; status.textContent = err.message;
    } finally { adapt.disabled = false; }
  } }, "Adapt");

  const predict = async (inputs, thumbs) => {
    if (!state.task) return;
    try {
      const path = `/v1/tasks/${state.task.id}/predictions`;
      const answer = await api.post(path, { inputs });
      curl.textContent += `\n\n${curlFor("POST", path, { inputs })}`;
      answer.predictions.forEach((prediction, i) => {
        results.prepend(h("div", { class: "prediction", "data-label": String(prediction) },
          thumbs && thumbs[i] ? h("img", { src: thumbs[i], alt: "query" }) : h("code", { text: JSON.stringify(inputs[i]).slice(0, 60) }),
          h("div", {}, h("strong", { class: "predicted", text: fmt(prediction) }),
            probabilityBars(answer.labels, answer.probabilities && answer.probabilities[i]))));
      });
    } catch (err) { status.className = "error"; status.textContent = err.message; }
  };

  // Queries: dropped or drawn images, or pasted rows.
  if (images) {
    const pad = h("canvas", { id: "pad", width: 196, height: 196, "aria-label": "drawing pad: draw a query with the mouse or a finger" });
    const g = pad.getContext("2d");
    const clear = () => { g.fillStyle = "#fff"; g.fillRect(0, 0, pad.width, pad.height); };
    clear();
    let drawing = false;
    const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
    pad.addEventListener("pointerdown", (e) => { drawing = true; pad.setPointerCapture(e.pointerId); g.beginPath(); g.moveTo(...at(e)); });
    pad.addEventListener("pointermove", (e) => {
      if (!drawing) return;
      g.lineWidth = 12; g.lineCap = "round"; g.strokeStyle = "#000"; g.lineTo(...at(e)); g.stroke();
    });
    pad.addEventListener("pointerup", () => { drawing = false; });
    queryBox.append(
      dropZone("Drop query images or", "image/png,image/jpeg", async (files) => {
        const read = await Promise.all(files.map(readImage));
        await predict(read.map((r) => r.b64), read.map((r) => r.url));
      }, { id: "query-drop" }),
      h("p", { class: "muted", text: "…or draw one:" }), pad,
      h("div", { class: "actions" },
        h("button", { type: "button", id: "predict-drawing", onclick: () => {
          const url = pad.toDataURL("image/png");
          predict([url.split(",", 2)[1]], [url]);
        } }, "Predict drawing"),
        h("button", { type: "button", onclick: clear }, "Clear")));
  } else {
    const queryRows = h("textarea", { id: "query-rows", "aria-label": `query rows, ${featureCount} numbers each` });
    queryBox.append(h("label", { for: "query-rows", text: `Queries (one per line, ${featureCount} numbers)` }), queryRows,
      h("div", { class: "actions" }, h("button", { type: "button", id: "predict-rows", onclick: () => {
        try {
          const inputs = parseRows(queryRows.value).map((cells, n) => {
            if (cells.length !== featureCount) throw new Error(`query ${n + 1} has ${cells.length} values; expected ${featureCount}`);
            return nest(cells.map(Number), model.input_shape);
          });
          predict(inputs, null);
        } catch (err) { status.className = "error"; status.textContent = err.message; }
      } }, "Predict")));
  }
  const predictBox = h("div", { hidden: true }, h("strong", { text: "2. Queries" }), queryBox, results);
  return h("section", { id: "try" }, h("div", { class: "try-cols" },
    h("div", {}, h("strong", { text: "1. Support set" }), supportBox, h("div", { class: "actions" }, adapt), status),
    predictBox),
    h("details", {}, h("summary", { text: "curl commands that do the same" }), curl));
}
