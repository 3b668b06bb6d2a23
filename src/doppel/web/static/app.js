"use strict";

const $ = (id) => document.getElementById(id);
const state = { galleries: [], upload: null, face: 0, searchToken: 0, also: [] };

function show(el, visible) { el.hidden = !visible; }

function setError(message) {
  $("error").textContent = message || "";
  show($("error"), Boolean(message));
}

function progress(text, fraction) {
  show($("progress"), text !== null);
  $("progress-text").textContent = text || "";
  const busy = fraction === undefined;
  $("progress").classList.toggle("busy", busy);
  $("progress-fill").style.width = busy ? "" : `${Math.round(fraction * 100)}%`;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(detail(body, response));
  return body;
}

function detail(body, response) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(-1)[0]}: ${d.msg}`).join("; ");
  }
  return `${response.status} ${response.statusText}`;
}

// Galleries and filters --------------------------------------------------------------

async function loadGalleries() {
  const data = await api("/api/galleries");
  state.galleries = data.galleries;
  const select = $("gallery");
  select.innerHTML = "";
  for (const g of data.galleries) {
    const label = g.available ? `${g.name} (${g.faces} faces)` : `${g.name} (unavailable)`;
    const option = new Option(label, g.name);
    // A gallery whose model could not be loaded cannot be searched; say why.
    if (!g.available) {
      option.disabled = true;
      option.title = g.unavailable || "";
    }
    select.add(option);
  }
  const usable = data.galleries.filter((g) => g.available);
  if (data.default && usable.some((g) => g.name === data.default)) select.value = data.default;
  else if (usable.length) select.value = usable[0].name;
  if (!data.galleries.length) {
    setError("No gallery yet: make one with `doppel ingest DIR`, then reload this page.");
  }
  galleryChanged(false);
}

function currentGallery() {
  return state.galleries.find((g) => g.name === $("gallery").value);
}

function galleryChanged(research = true) {
  const g = currentGallery();
  const attrs = g && g.attributes;
  show($("filters"), Boolean(attrs));
  $("gallery-info").textContent = !g
    ? ""
    : g.available
      ? `${g.model}, ${g.detector} detector`
      : `unavailable: ${g.unavailable}`;
  const down = state.galleries.filter((x) => !x.available);
  if (down.length) {
    setError(down.map((x) => `Gallery ${x.name} is unavailable: ${x.unavailable}`).join(" "));
  }
  const sex = $("sex");
  sex.length = 1;
  const races = $("races");
  races.innerHTML = "";
  if (attrs) {
    for (const s of attrs.sexes) sex.add(new Option(s === "F" ? "female" : s === "M" ? "male" : s, s));
    for (const r of attrs.races) {
      const label = document.createElement("label");
      label.innerHTML = `<input type="checkbox" value="${escapeHtml(r)}"> ${escapeHtml(r)}`;
      races.append(label);
    }
    $("age-min").placeholder = attrs.age_min ?? "min";
    $("age-max").placeholder = attrs.age_max ?? "max";
  }
  if (research) searchAgain();
}

function filters() {
  const body = { sex: $("sex").value || null, races: [], age_min: null, age_max: null };
  if ($("filters").hidden) body.sex = null;
  else {
    body.races = [...$("races").querySelectorAll("input:checked")].map((i) => i.value);
    const lo = $("age-min").value, hi = $("age-max").value;
    body.age_min = lo === "" ? null : Number(lo);
    body.age_max = hi === "" ? null : Number(hi);
  }
  return body;
}

// Upload and face picking ------------------------------------------------------------

function uploadPhoto(file) {
  setError(null);
  show($("results"), false);
  show($("picker"), false);
  if (state.upload) {
    fetch(`/api/uploads/${state.upload.upload_id}`, { method: "DELETE" }).catch(() => {});
    state.upload = null;
  }
  const form = new FormData();
  form.append("file", file);
  if ($("gallery").value) form.append("gallery", $("gallery").value);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/api/uploads");
  xhr.responseType = "json";
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) progress(`Uploading ${file.name}…`, e.loaded / e.total);
  };
  xhr.upload.onload = () => progress("Finding faces…");
  xhr.onerror = () => { progress(null); setError("The server did not answer; is it still running?"); };
  xhr.onload = () => {
    progress(null);
    if (xhr.status !== 200) {
      setError(detail(xhr.response, { status: xhr.status, statusText: xhr.statusText }));
      return;
    }
    showFaces(xhr.response);
  };
  progress(`Uploading ${file.name}…`, 0);
  xhr.send(form);
}

// Further photos of the same person: uploaded beside the first, their largest faces
// join its face in one query (a template) once they are in.
async function uploadMore(files) {
  const ids = [];
  for (const file of files) {
    const form = new FormData();
    form.append("file", file);
    if ($("gallery").value) form.append("gallery", $("gallery").value);
    try {
      const upload = await api("/api/uploads", { method: "POST", body: form });
      if (upload.faces.length) ids.push(upload.upload_id);
    } catch (e) {
      setError(`${file.name}: ${e.message}`);
    }
  }
  state.also = ids;
  searchAgain();
}

function choosePhotos(files) {
  const [first, ...rest] = files;
  if (!first) return;
  state.also = [];
  uploadPhoto(first);
  if (rest.length) uploadMore(rest.slice(0, 9));
}

function showFaces(upload) {
  state.upload = upload;
  state.face = 0;
  $("drop").classList.add("compact");
  const img = $("photo");
  const wrap = $("photo-wrap");
  wrap.querySelectorAll(".facebox").forEach((b) => b.remove());
  img.src = `/api/uploads/${upload.upload_id}/image`;
  show($("picker"), true);
  const n = upload.faces.length;
  if (n === 0) {
    $("picker-text").textContent = "";
    setError(`No face found in ${upload.name}. Try a clearer, front-facing photo.`);
    return;
  }
  $("picker-text").textContent = n === 1
    ? "One face found."
    : `${n} faces found; searching with the largest. Click another face to search with it.`;
  for (const face of upload.faces) {
    const box = document.createElement("button");
    box.className = "facebox";
    box.type = "button";
    box.title = `face ${face.index + 1}`;
    box.style.left = `${(100 * face.box.x) / upload.width}%`;
    box.style.top = `${(100 * face.box.y) / upload.height}%`;
    box.style.width = `${(100 * face.box.w) / upload.width}%`;
    box.style.height = `${(100 * face.box.h) / upload.height}%`;
    box.innerHTML = `<span>${face.index + 1}</span>`;
    box.onclick = () => { state.face = face.index; search(); };
    wrap.append(box);
  }
  search();
}

// Search and results -----------------------------------------------------------------

let again = null;
function searchAgain() {
  clearTimeout(again);
  if (state.upload && state.upload.faces.length) again = setTimeout(search, 250);
}

async function search() {
  const token = ++state.searchToken;
  document.querySelectorAll(".facebox").forEach((b, i) => b.classList.toggle("chosen", i === state.face));
  setError(null);
  progress("Searching…");
  const k = Math.max(1, Math.min(100, Number($("k").value) || 5));
  try {
    const body = {
      upload_id: state.upload.upload_id, face: state.face, gallery: $("gallery").value || null,
      k, strangers: $("strangers").checked, also: state.also, ...filters(),
      all_photos: $("strangers").checked && $("all-photos").checked,
    };
    // An empty or out-of-range threshold is the calibrated one.
    const threshold = $("threshold").value === "" ? NaN : Number($("threshold").value);
    if (threshold >= 0 && threshold <= 1) body.threshold = threshold;
    const result = await api("/api/search", {
      method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
    });
    if (token !== state.searchToken) return;
    renderResults(result);
  } catch (e) {
    if (token === state.searchToken) setError(e.message);
  } finally {
    if (token === state.searchToken) progress(null);
  }
}

function attributes(m) {
  const sex = m.sex === "F" ? "female" : m.sex === "M" ? "male" : m.sex;
  return [sex, m.age, m.race].filter((a) => a !== null && a !== undefined && a !== "").join(", ");
}

function renderResults(result) {
  $("query-face").src = `/api/uploads/${result.upload_id}/image?face=${result.face.index}&size=480`;
  $("query-text").textContent =
    `${state.upload.name}, face ${result.face.index + 1} of ${state.upload.faces.length}` +
    ` · ${result.matches.length} matches in gallery ${result.gallery}` +
    (result.photos.length > 1 ? ` · ${result.photos.length} photos as one query` : "") +
    (result.note ? ` · ${result.note}` : "") +
    (result.strangers ? ` · strangers only (own faces left out, similarity < ${result.strangers.threshold.toFixed(3)}${result.strangers.one_per_person ? "" : "; every photo of each"})` : "") +
    ` · search ${(result.seconds.total * 1000).toFixed(0)} ms`;
  const list = $("matches");
  list.innerHTML = "";
  // Attributes only where the gallery has them: elsewhere every card would say "none".
  const shown = state.galleries.find((g) => g.name === result.gallery);
  const hasAttributes = Boolean(shown && shown.attributes);
  let samePerson = false;
  for (const m of result.matches) {
    // A line where "likely the same person" (at or above the model's threshold) ends.
    if (samePerson && m.probably_query_person === false) list.append(samePersonLine());
    samePerson = m.probably_query_person === true;
    const item = document.createElement("li");
    item.className = "match";
    item.tabIndex = 0;
    const pct = Math.max(0, Math.min(100, m.similarity * 100));
    const attrs = attributes(m);
    item.innerHTML = `
      <img loading="lazy" alt="match ${m.rank}" src="${m.crop_url}">
      <div class="meta">
        <div class="top"><span class="rank">#${m.rank}</span>
          <span class="sim" title="cosine similarity">${m.similarity.toFixed(3)}</span></div>
        <div class="simbar"><div style="width:${pct}%"></div></div>
        ${m.strength ? `<div class="strength" title="how likely the model takes the two faces for one person">${escapeHtml(m.strength)}</div>` : ""}
        <div class="name" title="${escapeHtml(m.source)}">${escapeHtml(m.name)}</div>
        ${m.person ? `<div class="person">${escapeHtml(m.person)}</div>` : ""}
        ${hasAttributes && attrs ? `<div class="muted">${escapeHtml(attrs)}</div>` : ""}
      </div>`;
    item.onclick = () => openViewer(m);
    item.onkeydown = (e) => { if (e.key === "Enter") openViewer(m); };
    list.append(item);
  }
  if (!result.matches.length) setError("No face in this gallery passes these filters.");
  show($("results"), true);
}

function samePersonLine() {
  const line = document.createElement("li");
  line.className = "same-person";
  line.setAttribute("role", "separator");
  line.innerHTML = "<span>↑ likely the same person · look-alikes ↓</span>";
  return line;
}

function openViewer(m) {
  // The photo with the matched face outlined (drawn by the server, in the file's pixels).
  $("viewer-img").src = m.box ? `${m.image_url}${m.image_url.includes("?") ? "&" : "?"}outline=true` : m.image_url;
  const attrs = attributes(m);
  $("viewer-text").textContent =
    `#${m.rank} · similarity ${m.similarity.toFixed(4)} · ${m.source}` + (attrs ? ` · ${attrs}` : "") +
    (m.person ? ` · ${m.person}` : "");
  $("viewer").showModal();
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => (
    { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// Reports ----------------------------------------------------------------------------

async function loadReports() {
  const list = $("report-list");
  list.innerHTML = "";
  let reports = [];
  try {
    reports = await api("/api/reports");
  } catch (e) {
    setError(e.message);
  }
  show($("report-empty"), reports.length === 0);
  reports.forEach((r, i) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    const when = new Date(r.modified).toLocaleString();
    button.innerHTML = `${escapeHtml(r.title || r.name)}<small>${escapeHtml(r.name)} · ${when}</small>`;
    button.onclick = () => {
      list.querySelectorAll("button").forEach((b) => b.classList.remove("active"));
      button.classList.add("active");
      $("report-frame").src = r.index_url || r.json_url || r.pictures[0] || "about:blank";
    };
    li.append(button);
    list.append(li);
    if (i === 0) button.click();
  });
}

function switchView(view) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  show($("view-search"), view === "search");
  show($("view-reports"), view === "reports");
  show($("view-people"), view === "people");
  if (view === "reports") loadReports();
  // people.js, loaded after this script, opens its view itself when the page starts on it.
  if (view === "people" && typeof openPeopleView === "function") openPeopleView();
  history.replaceState(null, "", view === "search" ? "#" : `#${view}`);
}

// Wiring -----------------------------------------------------------------------------

function init() {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.onclick = () => switchView(tab.dataset.view);
  }
  $("file").onchange = () => choosePhotos([...$("file").files]);
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    choosePhotos([...e.dataTransfer.files]);
  };
  $("gallery").onchange = () => galleryChanged(true);
  for (const id of ["k", "sex", "age-min", "age-max", "all-photos", "threshold"]) $(id).onchange = searchAgain;
  $("strangers").onchange = () => {
    $("all-photos").disabled = !$("strangers").checked;
    searchAgain();
  };
  $("races").onchange = searchAgain;
  $("viewer").onclick = (e) => { if (e.target === $("viewer")) $("viewer").close(); };
  loadGalleries().catch((e) => setError(e.message));
  const start = location.hash.slice(1);
  switchView(["reports", "people"].includes(start) ? start : "search");
}

init();
