"use strict";
// The People view: a gallery's people as cards, one person as a grid of faces, and the
// edits `doppel people` makes (each through /api/people/..., each undoable where the
// command's is). Uses app.js's $, api, show and escapeHtml.

const people = {
  gallery: null, list: [], person: null, faces: [], selected: new Set(), loaded: false,
  busy: false,
};

function cropUrl(faceId) { return `/api/faces/${faceId}/image?crop=true`; }
function label(p) { return p.name || `person ${p.id}`; }
function faceCount(n) { return n === 1 ? "1 face" : `${n} faces`; }
function peoplePath(rest = "") {
  return `/api/people/${encodeURIComponent(people.gallery)}${rest}`;
}

function peopleError(message) {
  // One readable line: the API's sentence, never a stack or an object.
  $("people-error").textContent = message ? String(message).split("\n")[0] : "";
  show($("people-error"), Boolean(message));
  if (message) $("people-status").textContent = "";
}

function peopleStatus(message) {
  peopleError(null);
  $("people-status").textContent = message || "";
}

function post(path, body) {
  return api(peoplePath(path), {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
}

// Runs an edit: its message on success, the API's refusal as the error line; then the
// view is read again from the server, so the page shows what the database holds.
async function edit(work) {
  // One edit at a time: a second click while one runs is ignored.
  if (people.busy) return;
  people.busy = true;
  $("view-people").setAttribute("aria-busy", "true");
  peopleStatus("");
  try {
    const message = await work();
    await refreshPeople();
    peopleStatus(message);
  } catch (e) {
    // The page is read again first, so that what the line says is what is shown.
    await refreshPeople().catch(() => {});
    peopleError(e.message);
  } finally {
    people.busy = false;
    $("view-people").removeAttribute("aria-busy");
    updateSelection();
    keepFocus();
  }
}

// The view is drawn anew after an edit, which drops the focus of a keyboard user on
// a button that was replaced: it goes to the person's title, or the list's first card.
function keepFocus() {
  if (document.activeElement && document.activeElement !== document.body) return;
  const target = people.person ? $("person-title") : $("people-list").querySelector("button");
  if (target) target.focus({ preventScroll: true });
}

// The list ----------------------------------------------------------------------------

async function loadPeopleGalleries() {
  const data = await api("/api/galleries");
  const select = $("people-gallery");
  select.innerHTML = "";
  for (const g of data.galleries) select.add(new Option(`${g.name} (${g.faces} faces)`, g.name));
  if (!data.galleries.length) {
    peopleError("No gallery yet: make one with `doppel ingest DIR`, then reload this page.");
    return;
  }
  select.value = data.default && data.galleries.some((g) => g.name === data.default)
    ? data.default : data.galleries[0].name;
  people.gallery = select.value;
}

async function openPeopleView() {
  if (!people.loaded) {
    people.loaded = true;
    try {
      await loadPeopleGalleries();
    } catch (e) {
      people.loaded = false;
      peopleError(e.message);
      return;
    }
  }
  if (people.gallery) await refreshPeople().catch((e) => peopleError(e.message));
}

async function refreshPeople() {
  const hidden = $("people-hidden").checked;
  const [listing, pairs, done] = await Promise.all([
    api(peoplePath(`?hidden=${hidden}`)),
    api(peoplePath("/suggestions?k=6")),
    api(peoplePath("/edits")),
  ]);
  people.list = listing.people;
  renderPeople(listing);
  renderSuggestions(pairs);
  renderEdits(done);
  if (people.person !== null) await loadPerson(people.person.id, false);
}

function renderPeople(listing) {
  const shown = listing.people.length;
  const faces = listing.people.reduce((n, p) => n + p.faces, 0);
  $("people-summary").textContent =
    `${shown} ${shown === 1 ? "person" : "people"} · ${faceCount(faces)} in people` +
    ` · ${listing.unassigned} unassigned` +
    (listing.low_quality ? ` · ${listing.low_quality} unassigned: low quality` : "");
  const list = $("people-list");
  list.innerHTML = "";
  show($("people-empty"), shown === 0);
  for (const p of listing.people) {
    const item = document.createElement("li");
    const card = document.createElement("button");
    card.type = "button";
    card.className = `person-card${p.hidden ? " hidden" : ""}`;
    card.dataset.person = p.id;
    card.setAttribute("aria-label", `Open ${label(p)}, ${faceCount(p.faces)}${p.hidden ? ", hidden" : ""}`);
    const img = p.cover_face_id === null ? "" :
      `<img loading="lazy" alt="cover face of ${escapeHtml(label(p))}" src="${cropUrl(p.cover_face_id)}">`;
    card.innerHTML = `${img}<span class="who"><span class="name">${escapeHtml(label(p))}</span>
      <span class="count">${faceCount(p.faces)} · id ${p.id}${p.hidden ? '<span class="badge">hidden</span>' : ""}</span></span>`;
    card.onclick = () => loadPerson(p.id, true).catch((e) => peopleError(e.message));
    item.append(card);
    list.append(item);
  }
  // The faces in no person open as a grid too, so that they can be moved into one.
  for (const [kind, n] of [["unassigned", listing.unassigned], ["low", listing.low_quality]]) {
    if (!n) continue;
    const g = loose(kind, n);
    const item = document.createElement("li");
    const card = document.createElement("button");
    card.type = "button";
    card.className = "person-card loose";
    card.dataset.person = kind;
    card.setAttribute("aria-label", `Open ${g.name}, ${faceCount(n)}`);
    card.innerHTML = `<span class="who"><span class="name">${escapeHtml(g.name)}</span>
      <span class="count">${faceCount(n)}</span></span>`;
    card.onclick = () => loadPerson(kind, true).catch((e) => peopleError(e.message));
    item.append(card);
    list.append(item);
  }
}

// The faces in no person, as a group that is not a person: "unassigned", or "low" for
// those below the gallery's quality floor (searchable, never grouped by doppel).
function loose(kind, n) {
  const name = kind === "low" ? "Unassigned: low quality" : "Unassigned faces";
  return { id: kind, name, faces: n, hidden: false, cover_face_id: null, loose: true };
}

async function looseFaces(kind) {
  const faces = await api(peoplePath(`/unassigned?low_quality=${kind === "low"}`));
  if (faces.length === 0) throw new Error("no faces are left there");
  return { person: loose(kind, faces.length), faces };
}

function renderSuggestions(pairs) {
  const list = $("suggestion-list");
  list.innerHTML = "";
  show($("suggestions"), pairs.length > 0);
  for (const s of pairs) {
    // The person with more faces stays: fewer faces change person.
    const [keep, other] = s.second.faces > s.first.faces ? [s.second, s.first] : [s.first, s.second];
    const item = document.createElement("li");
    item.className = "pair";
    const face = (p) => p.cover_face_id === null ? "<span></span>" :
      `<img loading="lazy" alt="cover face of ${escapeHtml(label(p))}" src="${cropUrl(p.cover_face_id)}">`;
    item.innerHTML = `${face(s.first)}${face(s.second)}
      <div class="what"><strong>${Math.round(s.probability * 100)}%</strong> one person
        <div>${escapeHtml(label(s.first))} (${faceCount(s.first.faces)}) and
          ${escapeHtml(label(s.second))} (${faceCount(s.second.faces)})</div>
        <div class="actions"></div></div>`;
    const merge = document.createElement("button");
    merge.type = "button";
    merge.textContent = "Merge";
    merge.setAttribute("aria-label", `Merge ${label(other)} into ${label(keep)}`);
    merge.onclick = () => edit(async () => {
      const kept = await post("/merge", { keep: keep.id, other: other.id });
      if (people.person && people.person.id === other.id) closePerson();
      return `${label(other)} merged into ${label(kept)}: ${faceCount(kept.faces)}.`;
    });
    const apart = document.createElement("button");
    apart.type = "button";
    apart.className = "secondary";
    apart.textContent = "Different people";
    apart.setAttribute("aria-label", `${label(s.first)} and ${label(s.second)} are different people`);
    apart.onclick = () => edit(async () => {
      await post("/apart", { first: s.first.id, second: s.second.id });
      return `${label(s.first)} and ${label(s.second)} are kept apart; not suggested again.`;
    });
    item.querySelector(".actions").append(merge, apart);
    list.append(item);
  }
}

const EDIT_WORDS = {
  merge: (e) => `person ${e.other_id} merged into person ${e.person_id}`,
  remove: (e) => `${faceCount(e.faces.length)} taken out of person ${e.person_id}`,
  move: (e) => `${faceCount(e.faces.length)} moved from person ${e.person_id} to person ${e.other_id}`,
};

function editWords(e) {
  return (EDIT_WORDS[e.kind] || ((x) => `${x.kind} of person ${x.person_id}`))(e);
}

function renderEdits(done) {
  const list = $("edit-list");
  list.innerHTML = "";
  $("people-undo").disabled = done.length === 0;
  show($("people-edits"), done.length > 0);
  for (const e of done.slice(0, 20)) {
    const item = document.createElement("li");
    const when = e.created_at ? new Date(e.created_at).toLocaleString() : "";
    item.textContent = `${editWords(e)}${when ? ` · ${when}` : ""}`;
    const undo = document.createElement("button");
    undo.type = "button";
    undo.className = "secondary";
    undo.textContent = "Undo";
    undo.setAttribute("aria-label", `Undo: ${editWords(e)}`);
    undo.onclick = () => restoreEdit(e.edit);
    item.append(undo);
    list.append(item);
  }
}

function restoreEdit(id) {
  return edit(async () => {
    const e = await post("/restore", { edit: id });
    return `Undone: ${editWords(e)}.`;
  });
}

// One person -----------------------------------------------------------------------------

async function loadPerson(id, fresh) {
  let data;
  try {
    data = typeof id === "string" ? await looseFaces(id) : await api(peoplePath(`/${id}`));
  } catch (e) {
    // The person went (merged away, or its last face moved): back to the list.
    closePerson();
    if (fresh) throw e;
    return;
  }
  // A refresh that ends after the user went back to the list (or on to another
  // person) leaves the view as it is.
  if (!fresh && (people.person === null || people.person.id !== id)) return;
  const p = data.person;
  if (fresh || !people.person || people.person.id !== p.id) people.selected.clear();
  people.person = p;
  people.faces = data.faces;
  const present = new Set(data.faces.map((f) => f.face_id));
  for (const f of [...people.selected]) if (!present.has(f)) people.selected.delete(f);
  renderPerson(p, data.faces);
  show($("people-browse"), false);
  show($("person"), true);
  if (fresh) {
    $("person-name").value = p.name || "";
    $("person-title").focus();
    window.scrollTo(0, 0);
  }
}

function renderPerson(p, faces) {
  $("person-title").textContent = label(p);
  $("person-title").tabIndex = -1;
  $("person-info").textContent = p.loose
    ? `${faceCount(p.faces)} in no person: select faces and move them into one`
    : `id ${p.id} · ${faceCount(p.faces)}${p.hidden ? " · hidden (left out of lists and strangers)" : ""}`;
  // Renaming, merging, hiding, covers, splitting and taking out are for people only.
  for (const id of ["person-tools", "split-faces", "remove-faces"]) show($(id), !p.loose);
  const cover = $("person-cover");
  show(cover, p.cover_face_id !== null);
  if (p.cover_face_id !== null) {
    cover.src = cropUrl(p.cover_face_id);
    cover.alt = `cover face of ${label(p)}`;
  }
  $("person-hide").textContent = p.hidden ? "Show again" : "Hide";
  const others = people.list.filter((o) => o.id !== p.id);
  const merge = $("merge-other");
  merge.innerHTML = "";
  const move = $("move-to");
  move.innerHTML = "";
  move.add(new Option("a new person", "new"));
  for (const o of others) {
    const text = `${label(o)} (id ${o.id}, ${faceCount(o.faces)})`;
    merge.add(new Option(text, o.id));
    move.add(new Option(text, o.id));
  }
  $("merge-form").querySelector("button").disabled = others.length === 0;
  const grid = $("person-faces");
  grid.innerHTML = "";
  for (const f of faces) grid.append(faceTile(p, f));
  updateSelection();
}

function shortSource(source) {
  return source.split(/[\\/]/).pop();
}

function faceTile(p, f) {
  const item = document.createElement("li");
  const isCover = !p.loose && f.face_id === p.cover_face_id;
  item.className = `face${isCover ? " cover" : ""}`;
  item.dataset.face = f.face_id;
  const name = shortSource(f.source);
  item.innerHTML = `<label>
      <input type="checkbox" aria-label="select face ${f.face_id} (${escapeHtml(name)})">
      <img loading="lazy" src="${cropUrl(f.face_id)}"
        alt="face ${f.face_id}${p.loose ? ", in no person" : ` of ${escapeHtml(label(p))}`}, from ${escapeHtml(name)}">
    </label>
    <div class="meta"><span title="${escapeHtml(f.source)}">${f.face_id} · ${escapeHtml(name)}</span></div>`;
  const box = item.querySelector("input");
  box.checked = people.selected.has(f.face_id);
  item.classList.toggle("selected", box.checked);
  box.onchange = () => {
    if (box.checked) people.selected.add(f.face_id);
    else people.selected.delete(f.face_id);
    item.classList.toggle("selected", box.checked);
    updateSelection();
  };
  const meta = item.querySelector(".meta");
  if (p.loose) {
    // No cover to make: the faces belong to no person yet.
  } else if (isCover) {
    const mark = document.createElement("span");
    mark.className = "is-cover";
    mark.textContent = "cover";
    meta.append(mark);
  } else {
    const make = document.createElement("button");
    make.type = "button";
    make.className = "secondary make-cover";
    make.textContent = "Make cover";
    make.setAttribute("aria-label", `Make face ${f.face_id} the cover of ${label(p)}`);
    make.onclick = () => edit(async () => {
      const done = await post(`/${p.id}/cover`, { face_id: f.face_id });
      return `Face ${done.cover_face_id} now shows ${label(done)}.`;
    });
    meta.append(make);
  }
  return item;
}

function updateSelection() {
  const n = people.selected.size;
  $("selection-count").textContent = n === 0 ? "No face selected" : `${faceCount(n)} selected`;
  for (const id of ["move-faces", "split-faces", "remove-faces"]) $(id).disabled = n === 0;
}

function closePerson() {
  people.person = null;
  people.selected.clear();
  show($("person"), false);
  show($("people-browse"), true);
}

function selectedFaces() {
  return [...people.selected];
}

function wirePeople() {
  $("people-gallery").onchange = () => {
    people.gallery = $("people-gallery").value;
    closePerson();
    peopleStatus("");
    refreshPeople().catch((e) => peopleError(e.message));
  };
  $("people-hidden").onchange = () => refreshPeople().catch((e) => peopleError(e.message));
  $("people-undo").onclick = () => restoreEdit(null);
  $("person-back").onclick = () => {
    const id = people.person && people.person.id;
    closePerson();
    const card = document.querySelector(`.person-card[data-person="${id}"]`);
    if (card) card.focus();
  };
  $("rename-form").onsubmit = (e) => {
    e.preventDefault();
    const p = people.person;
    const name = $("person-name").value;
    edit(async () => {
      const done = await post(`/${p.id}/name`, { name });
      return `Person ${done.id} is now called ${done.name}.`;
    });
  };
  $("merge-form").onsubmit = (e) => {
    e.preventDefault();
    const p = people.person;
    const other = Number($("merge-other").value);
    const gone = people.list.find((o) => o.id === other);
    edit(async () => {
      const done = await post("/merge", { keep: p.id, other });
      return `${gone ? label(gone) : `person ${other}`} merged into ${label(done)}: ${faceCount(done.faces)}.`;
    });
  };
  $("person-hide").onclick = () => {
    const p = people.person;
    edit(async () => {
      const done = await post(`/${p.id}/hide`, { hidden: !p.hidden });
      return `${label(done)} is ${done.hidden ? "hidden: left out of the list and of strangers" : "shown again"}.`;
    });
  };
  $("person-regroup").onclick = () => {
    const p = people.person;
    edit(async () => {
      const parts = await post(`/${p.id}/split`, {});
      if (parts.length === 1) return `${label(p)} stays whole at this cut.`;
      const made = parts.slice(1).map((x) => `person ${x.id} (${faceCount(x.faces)})`).join(", ");
      return `${label(p)} keeps ${faceCount(parts[0].faces)}; new: ${made}.`;
    });
  };
  $("split-faces").onclick = () => {
    const p = people.person;
    const faces = selectedFaces();
    edit(async () => {
      const parts = await post(`/${p.id}/split`, { faces });
      people.selected.clear();
      return `${faceCount(faces.length)} split off ${label(p)} as person ${parts[parts.length - 1].id}.`;
    });
  };
  $("move-faces").onclick = () => {
    const faces = selectedFaces();
    const to = $("move-to").value;
    edit(async () => {
      const done = await post("/move", { faces, to: to === "new" ? null : Number(to) });
      people.selected.clear();
      return `${faceCount(faces.length)} moved to ${label(done)} (id ${done.id}), which now has ${faceCount(done.faces)}.`;
    });
  };
  $("remove-faces").onclick = () => {
    const p = people.person;
    const faces = selectedFaces();
    edit(async () => {
      const left = await post(`/${p.id}/remove`, { faces });
      people.selected.clear();
      return `${faceCount(faces.length)} taken out of ${label(p)}` +
        (left ? `; ${faceCount(left.faces)} left.` : "; no face left.");
    });
  };
}

wirePeople();
if (!$("view-people").hidden) openPeopleView();
