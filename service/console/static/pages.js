"use strict";
// The console's pages. Each renders into `view` and returns a function that stops its timers and streams.
const pages = {};
const MAIN_KEYS = ["steps", "meta_batch_size", "n_way", "k_shot", "k_query", "eval_episodes", "checkpoint_every", "seed",
  "inner_lr", "adapt_steps", "inner_steps", "meta_lr", "val_fraction", "test_fraction", "split_by", "hidden"];

function metricsText(metrics) {
  return Object.entries(metrics || {}).filter(([, v]) => typeof v === "number").slice(0, 4)
    .map(([k, v]) => `${k} ${fmt(v)}`).join(", ");
}

function progressCell(job) {
  const p = job.progress;
  return h("span", {}, h("progress", { max: p.total_steps || 1, value: p.step, "aria-label": `step ${p.step} of ${p.total_steps}` }),
    ` ${p.step}/${p.total_steps}`);
}

pages.jobs = (view) => {
  view.append(h("h1", { text: "Jobs" }), h("p", {}, h("a", { href: "#/jobs/new" }, "Start a job")));
  const holder = h("section", { "aria-live": "polite" }, "Loading…");
  view.append(holder);
  const load = async () => {
    const jobs = await api.get("/v1/jobs?limit=100");
    holder.replaceChildren(jobs.data.length ? table(
      ["job", "algorithm", "dataset", "status", "progress", "latest metrics", "created"],
      jobs.data.map((j) => [h("a", { href: `#/jobs/${j.id}`, class: "mono" }, j.id), j.algorithm, j.dataset,
        statusBadge(j.status), progressCell(j), metricsText(j.progress.metrics), when(j.created_at)]),
      { narrowHidden: [5, 6] }) : h("p", { class: "muted", text: "No jobs yet." }));
    holder.dataset.count = String(jobs.data.length);
  };
  const timer = setInterval(() => load().catch((err) => { if (err.status === 401) clearInterval(timer); showError(err); }), 2000);
  load().catch((err) => { holder.replaceChildren(h("p", { class: "error", text: err.message })); });
  return () => clearInterval(timer);
};

pages.job = (view, jobId) => {
  const controller = new AbortController();
  const head = h("div"), board = new ChartBoard();
  const events = h("tbody"), checkpoints = h("div", {}, "—"), config = h("pre");
  view.append(h("h1", {}, "Job ", h("span", { class: "mono", text: jobId })), head,
    h("h2", { text: "Learning curves" }), board.el,
    h("p", { class: "muted", id: "no-curves", text: "Curves appear with the first progress event." }),
    h("h2", { text: "Checkpoints" }), h("section", {}, checkpoints),
    h("h2", { text: "Events" }), h("section", {}, h("div", { class: "scroll events", tabindex: "0", "aria-label": "events" }, h("table", {},
      h("thead", {}, h("tr", {}, h("th", { text: "id" }), h("th", { text: "type" }), h("th", { text: "data" }), h("th", { text: "at" }))),
      events))),
    h("h2", { text: "Config" }), config);

  const renderHead = (job) => {
    const cancel = ["queued", "running"].includes(job.status)
      ? h("button", { type: "button", id: "cancel", onclick: async (e) => {
        e.target.disabled = true;
        try { renderHead(await api.post(`/v1/jobs/${jobId}/cancel`)); } catch (err) { showError(err); e.target.disabled = false; }
      } }, "Cancel job") : null;
    head.replaceChildren(h("section", {}, h("dl", { class: "kv" },
      h("dt", { text: "status" }), h("dd", { id: "job-status" }, statusBadge(job.status)),
      h("dt", { text: "algorithm" }), h("dd", { text: job.algorithm }),
      h("dt", { text: "dataset" }), h("dd", { text: job.dataset }),
      h("dt", { text: "progress" }), h("dd", {}, progressCell(job)),
      h("dt", { text: "model" }), h("dd", {}, job.model_id ? h("a", { href: `#/models/${job.model_id}`, class: "mono" }, job.model_id) : "—"),
      job.error ? h("dt", { text: "error" }) : null, job.error ? h("dd", { class: "error", text: job.error }) : null,
      h("dt", { text: "created" }), h("dd", { text: when(job.created_at) }),
      h("dt", { text: "finished" }), h("dd", { text: when(job.finished_at) })),
      h("div", { class: "actions" }, cancel)));
    config.textContent = JSON.stringify(job.config, null, 2);
  };
  const loadJob = () => api.get(`/v1/jobs/${jobId}`).then(renderHead);
  const loadCheckpoints = async () => {
    const list = await api.get(`/v1/jobs/${jobId}/checkpoints?limit=100`);
    checkpoints.replaceChildren(list.data.length ? table(["checkpoint", "step", "metrics", "at"],
      list.data.map((c) => [h("span", { class: "mono", text: c.id }), c.step, metricsText(c.metrics), when(c.created_at)]))
      : h("span", { class: "muted", text: "None yet." }));
  };
  const onEvent = (type, event) => {
    if (type === "end") { loadJob().catch(showError); loadCheckpoints().catch(showError); return; }
    if (type === "progress") {
      board.add(event.data.step, event.data.metrics);
      const hint = document.getElementById("no-curves");
      if (hint) hint.remove();
    }
    if (type === "status") loadJob().catch(showError);
    if (type === "checkpoint") loadCheckpoints().catch(showError);
    events.prepend(h("tr", {}, h("td", { text: event.id }), h("td", { text: event.type }),
      h("td", { class: "mono", text: JSON.stringify(event.data) }), h("td", { text: when(event.created_at) })));
    while (events.children.length > 200) events.lastChild.remove();
  };
  loadJob().then(() => api.streamEvents(jobId, onEvent, controller.signal)).catch(showError);
  loadCheckpoints().catch(showError);
  const resize = () => board.redraw();
  window.addEventListener("resize", resize);
  return () => { controller.abort(); window.removeEventListener("resize", resize); };
};

function fieldFor(key, value) {
  const id = `cfg-${key}`;
  let input;
  if (typeof value === "boolean") input = h("input", { id, type: "checkbox", checked: value });
  else if (typeof value === "number") input = h("input", { id, type: "number", step: "any", value: String(value) });
  else input = h("input", { id, type: "text", value: typeof value === "string" ? value : JSON.stringify(value) });
  input.dataset.key = key;
  return h("label", { for: id }, key, input);
}

function fieldValue(input, original) {
  if (input.type === "checkbox") return input.checked;
  if (typeof original === "number") return input.value === "" ? original : Number(input.value);
  if (typeof original === "string") return input.value;
  return JSON.parse(input.value);
}

pages.newJob = (view) => {
  const algorithm = h("select", { id: "algorithm" }), dataset = h("select", { id: "dataset" });
  const fields = h("div", { class: "form-grid" }), others = h("textarea", { id: "extra-config", placeholder: "{}" });
  const allKeys = h("pre"), message = h("p", { role: "status" });
  let defaults = {};
  const form = h("form", { class: "card", novalidate: true },
    h("div", { class: "form-grid" }, h("label", { for: "algorithm" }, "algorithm", algorithm), h("label", { for: "dataset" }, "dataset", dataset)),
    h("h2", { text: "Main settings (defaults filled in)" }), fields,
    h("h2", {}, h("label", { for: "extra-config", text: "Other settings (JSON object)" })), others,
    h("details", {}, h("summary", { text: "Every key and its default" }), allKeys),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Start job"), message));
  view.append(h("h1", { text: "Start a job" }), form);
  let asked = 0;  // the latest choice wins when answers cross
  const loadDefaults = async () => {
    message.textContent = "";
    const mine = ++asked;
    const body = await fetch(`/console/defaults?algorithm=${encodeURIComponent(algorithm.value)}&dataset=${encodeURIComponent(dataset.value)}`)
      .then(async (r) => { const data = await r.json(); if (!r.ok) throw api.failure(r.status, data); return data; });
    if (mine !== asked) return;
    defaults = body.config;
    fields.replaceChildren(...MAIN_KEYS.filter((k) => k in defaults).map((k) => fieldFor(k, defaults[k])));
    allKeys.textContent = JSON.stringify(defaults, null, 2);
  };
  const init = async () => {
    const [choices, datasets] = await Promise.all([fetch("/console/defaults").then((r) => r.json()), api.get("/v1/datasets?limit=100")]);
    algorithm.replaceChildren(...choices.algorithms.map((a) => h("option", { value: a, text: a })));
    dataset.replaceChildren(...datasets.data.map((d) => h("option", { value: d.id, text: d.builtin ? d.id : `${d.name} (${d.id})` })));
    const wanted = new URLSearchParams(location.hash.split("?")[1] || "");
    if (wanted.get("dataset")) dataset.value = wanted.get("dataset");
    algorithm.value = wanted.get("algorithm") || "maml";
    await loadDefaults();
  };
  algorithm.addEventListener("change", () => loadDefaults().catch((e) => { message.className = "error"; message.textContent = e.message; }));
  dataset.addEventListener("change", () => loadDefaults().catch((e) => { message.className = "error"; message.textContent = e.message; }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    message.className = ""; message.textContent = "Submitting…";
    try {
      const config = others.value.trim() ? JSON.parse(others.value) : {};
      for (const input of fields.querySelectorAll("input")) {
        const key = input.dataset.key, value = fieldValue(input, defaults[key]);
        if (JSON.stringify(value) !== JSON.stringify(defaults[key])) config[key] = value;
      }
      const job = await api.post("/v1/jobs", { algorithm: algorithm.value, dataset: dataset.value, config },
        { "Idempotency-Key": api.idempotencyKey() });
      location.hash = `#/jobs/${job.id}`;
    } catch (err) {
      message.className = "error";
      message.textContent = err.param ? `${err.param}: ${err.message}` : err.message;
    }
  });
  init().catch(showError);
  return () => {};
};

pages.datasets = (view) => {
  const list = h("section", {}, "Loading…"), uploads = h("ul", { class: "uploads", id: "uploads", "aria-live": "polite" });
  const name = h("input", { id: "ds-name", placeholder: "the file name" });
  const size = h("input", { id: "ds-size", type: "number", value: "28", min: "8", max: "256" });
  const invert = h("input", { id: "ds-invert", type: "checkbox" });
  const load = async () => {
    const all = await api.get("/v1/datasets?limit=100");
    list.replaceChildren(table(["dataset", "name", "format", "output", "input shape", "summary / description"],
      all.data.map((d) => [h("span", { class: "mono", text: d.id }), d.name, d.format, d.output, fmt(d.input_shape),
        d.builtin ? (d.description || "") : fmt(d.summary)]), { narrowHidden: [5] }));
  };
  const upload = async (file) => {
    const status = h("span", { class: "muted", text: "uploading…" });
    uploads.prepend(h("li", {}, h("span", { class: "name", text: file.name }), status));
    const form = new FormData();
    form.append("file", file, file.name);
    if (name.value) form.append("name", name.value);
    form.append("image_size", size.value || "28");
    form.append("invert", invert.checked ? "true" : "false");
    try {
      const ds = await api.request("POST", "/v1/datasets", form, { "Idempotency-Key": api.idempotencyKey() });
      status.className = "ok";
      status.replaceChildren(`uploaded as `, h("span", { class: "mono", text: ds.id }), ` (${ds.format}, ${fmt(ds.summary)}) `,
        h("a", { href: `#/jobs/new?dataset=${ds.id}` }, "train on it"));
      load().catch(showError);
    } catch (err) {
      status.className = "error";
      status.textContent = `${err.status || ""} ${err.message}`.trim();
    }
  };
  view.append(h("h1", { text: "Datasets" }),
    h("section", {}, h("h2", { text: "Upload" }),
      h("p", { class: "muted", text: "A zip of class folders of images, an npz (x, y, optional task) or a CSV. Errors from the server appear next to the file." }),
      h("div", { class: "form-grid" }, h("label", { for: "ds-name" }, "name", name), h("label", { for: "ds-size" }, "image size", size),
        h("label", { for: "ds-invert" }, "invert images", invert)),
      h("div", { style: "margin-top:8px" }, dropZone("Drop files here or", ".zip,.npz,.csv", (files) => files.forEach(upload), { id: "dataset-drop" })),
      uploads),
    h("h2", { text: "All datasets" }), list);
  load().catch((err) => list.replaceChildren(h("p", { class: "error", text: err.message })));
  return () => {};
};

pages.models = (view) => {
  const holder = h("section", {}, "Loading…");
  view.append(h("h1", { text: "Models" }), holder);
  api.get("/v1/models?limit=100").then((models) => holder.replaceChildren(models.data.length ? table(
    ["model", "algorithm", "dataset", "output", "metrics", "created"],
    models.data.map((m) => [h("a", { href: `#/models/${m.id}`, class: "mono" }, m.id), m.algorithm, m.dataset,
      m.output + (m.ways ? ` (${m.ways}-way)` : ""), metricSummary(m.metrics), when(m.created_at)]), { narrowHidden: [5] })
    : h("p", { class: "muted", text: "No models yet: a job that succeeds makes one." })))
    .catch((err) => holder.replaceChildren(h("p", { class: "error", text: err.message })));
  return () => {};
};

function metricSummary(metrics) {
  return Object.keys(metrics || {}).filter((k) => !k.endsWith("_ci95") && typeof metrics[k] === "number" && k !== "episodes").slice(0, 2)
    .map((k) => `${k} ${fmt(metrics[k])}` + (metrics[`${k}_ci95`] !== undefined ? ` ± ${fmt(metrics[`${k}_ci95`])}` : "")).join(", ");
}

function splitsView(splits) {
  if (!splits) return h("p", { class: "muted", text: "This dataset draws new tasks for every split (or the model predates recorded splits)." });
  return table(["split", splits.kind, "names"], ["train", "val", "test"].map((s) => [s, splits[s].count,
    h("details", {}, h("summary", { text: splits[s].names.slice(0, 3).join(", ") + (splits[s].count > 3 ? ", …" : "") }),
      splits[s].names.join(", "))]));
}

pages.model = (view, modelId) => {
  const body = h("div", {}, "Loading…");
  view.append(h("h1", {}, "Model ", h("span", { class: "mono", text: modelId })), body);
  const load = async () => {
    const [model, tasks] = await Promise.all([api.get(`/v1/models/${modelId}`), api.get(`/v1/models/${modelId}/tasks?limit=100`)]);
    const metrics = model.metrics || {};
    const rows = Object.keys(metrics).filter((k) => !k.endsWith("_ci95")).map((k) => [k, fmt(metrics[k]),
      metrics[`${k}_ci95`] !== undefined ? `± ${fmt(metrics[`${k}_ci95`])} (95% CI)` : ""]);
    body.replaceChildren(
      h("section", {}, h("dl", { class: "kv" },
        h("dt", { text: "algorithm" }), h("dd", { text: model.algorithm }),
        h("dt", { text: "trained on" }), h("dd", { text: model.dataset }),
        h("dt", { text: "job" }), h("dd", {}, h("a", { href: `#/jobs/${model.job_id}`, class: "mono" }, model.job_id)),
        h("dt", { text: "output" }), h("dd", { text: model.output + (model.ways ? `, ${model.ways}-way` : "") }),
        h("dt", { text: "input shape" }), h("dd", { text: fmt(model.input_shape) + (model.accepts_images ? " (takes PNG/JPEG)" : "") }),
        h("dt", { text: "created" }), h("dd", { text: when(model.created_at) }))),
      h("h2", { text: "Try a task" }), tryPanel(model),
      h("h2", { text: "Metrics" }), h("section", { id: "metrics" }, table(["metric", "value", "confidence interval"], rows)),
      h("h2", { text: "What it was trained on" }), h("section", {}, splitsView(model.splits)),
      Object.keys(model.training_tasks || {}).length ? h("section", {}, h("strong", { text: "Training tasks (ready for predictions)" }),
        table(["name", "task"], Object.entries(model.training_tasks).map(([n, t]) => [n, h("span", { class: "mono", text: t })]))) : null,
      h("h2", { text: "Tasks" }), h("section", { id: "tasks" }, tasks.data.length ? table(["task", "status", "labels", "support", "created"],
        tasks.data.map((t) => [h("span", { class: "mono", text: t.id }), statusBadge(t.status), fmt(t.labels), t.support_size, when(t.created_at)]))
        : h("p", { class: "muted", text: "No tasks yet." })),
      h("h2", { text: "Config" }), h("pre", { text: JSON.stringify(model.config, null, 2) }));
  };
  load().catch((err) => body.replaceChildren(h("p", { class: "error", text: err.message })));
  return () => {};
};
