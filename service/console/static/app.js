"use strict";
// The console's router: #/jobs, #/jobs/new, #/jobs/<id>, #/datasets, #/models, #/models/<id>.
let stopPage = () => {};

function showError(err) {
  const banner = document.getElementById("banner");
  banner.textContent = err && err.message ? err.message : String(err);
  banner.hidden = false;
}

function route() {
  stopPage();
  document.getElementById("banner").hidden = true;
  const view = document.getElementById("view");
  view.replaceChildren();
  const parts = location.hash.replace(/^#\/?/, "").split("?")[0].split("/").filter(Boolean).map(decodeURIComponent);
  const [section, id] = parts;
  let render;
  if (section === "datasets") render = () => pages.datasets(view);
  else if (section === "models" && id) render = () => pages.model(view, id);
  else if (section === "models") render = () => pages.models(view);
  else if (section === "jobs" && id === "new") render = () => pages.newJob(view);
  else if (section === "jobs" && id) render = () => pages.job(view, id);
  else render = () => pages.jobs(view);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.getAttribute("href") === "#/" + parts.slice(0, section === "jobs" && id === "new" ? 2 : 1).join("/"));
  }
  stopPage = render() || (() => {});
}

function setupKeyForm() {
  const form = document.getElementById("key-form"), input = document.getElementById("api-key");
  form.hidden = !api.key();
  form.addEventListener("submit", (e) => { e.preventDefault(); api.setKey(input.value.trim()); input.value = ""; route(); });
  document.getElementById("key-forget").addEventListener("click", () => { api.setKey(""); route(); });
  window.addEventListener("fewshot:unauthorized", (e) => {
    form.hidden = false;
    showError(`${e.detail} Enter an API key above (kept in this tab's session storage only).`);
    input.focus();
  });
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => { setupKeyForm(); route(); });
