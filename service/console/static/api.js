"use strict";
// The API client of the console: requests to this server only, with the API key kept in sessionStorage.
const KEY_ITEM = "fewshot.apiKey";

const api = {
  key() { return sessionStorage.getItem(KEY_ITEM) || ""; },
  setKey(key) { key ? sessionStorage.setItem(KEY_ITEM, key) : sessionStorage.removeItem(KEY_ITEM); },
  headers(extra) {
    const h = Object.assign({}, extra || {});
    if (api.key()) h["Authorization"] = "Bearer " + api.key();
    return h;
  },
  async request(method, path, body, extraHeaders) {
    const init = { method, headers: api.headers(extraHeaders) };
    if (body instanceof FormData) init.body = body;
    else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    const response = await fetch(path, init);
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw api.failure(response.status, data);
    return data;
  },
  failure(status, data) {
    const detail = (data && data.error) || {};
    const err = new Error(detail.message || ("HTTP " + status));
    err.status = status; err.code = detail.code; err.param = detail.param;
    if (status === 401) window.dispatchEvent(new CustomEvent("fewshot:unauthorized", { detail: err.message }));
    return err;
  },
  get(path) { return api.request("GET", path); },
  post(path, body, headers) { return api.request("POST", path, body, headers); },
  idempotencyKey() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return "console-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  },
  // A job's events as a Server-Sent Events stream read with fetch (EventSource cannot send the key).
  // Calls onEvent(type, data, id) per event; resumes after a dropped connection until the `end` event.
  async streamEvents(jobId, onEvent, signal) {
    let after = 0;
    for (let attempt = 0; attempt < 20 && !signal.aborted; attempt++) {
      try {
        const response = await fetch(`/v1/jobs/${encodeURIComponent(jobId)}/events?stream=true&after=${after}`,
          { headers: api.headers({ Accept: "text/event-stream" }), signal });
        if (!response.ok) throw api.failure(response.status, await response.json().catch(() => ({})));
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            let type = "message", data = "", id = null;
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) type = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
              else if (line.startsWith("id: ")) id = Number(line.slice(4));
            }
            if (line_is_comment(block)) continue;
            if (id !== null) after = id;
            onEvent(type, data ? JSON.parse(data) : {}, id);
            if (type === "end") return;
          }
        }
      } catch (err) {
        if (signal.aborted || err.name === "AbortError") return;
        if (err.status) throw err;  // the server said no: retrying would not help
      }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  },
};

function line_is_comment(block) { return block.split("\n").every((line) => line === "" || line.startsWith(":")); }

// Small DOM helpers shared by the pages.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function fmt(value) {
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(4).replace(/\.?0+$/, "");
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

function when(iso) { return iso ? new Date(iso).toLocaleString() : "—"; }

function statusBadge(status) { return h("span", { class: "status " + status, text: status }); }

function table(headers, rows, opts) {
  const cls = opts && opts.narrowHidden ? opts.narrowHidden : [];
  return h("div", { class: "scroll" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((t, i) => h("th", { class: cls.includes(i) ? "hide-narrow" : null, scope: "col" }, t)))),
    h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c, i) => h("td", { class: cls.includes(i) ? "hide-narrow" : null }, c)))))));
}

// Reads files as base64 (no data: prefix) and as a data URL for thumbnails.
function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve({ name: file.name, url: reader.result, b64: String(reader.result).split(",", 2)[1] });
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

// A drop zone with a keyboard-reachable "choose files" button; calls onFiles(File[]).
function dropZone(text, accept, onFiles, attrs) {
  const input = h("input", { type: "file", multiple: true, accept, hidden: true,
    onchange: () => { onFiles(Array.from(input.files)); input.value = ""; } });
  const zone = h("div", Object.assign({ class: "drop" }, attrs || {}), text + " ",
    h("button", { type: "button", onclick: () => input.click() }, "choose files"), input);
  zone.addEventListener("dragover", (e) => { e.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault(); zone.classList.remove("over");
    onFiles(Array.from(e.dataTransfer.files));
  });
  return zone;
}
