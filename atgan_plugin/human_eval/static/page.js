// The human-evaluation page: one item at a time, answered with the keyboard (y / n, then 0-9 when
// the class is asked) or the buttons. Every answer is sent at once and the next item is shown only
// after the server has written it to disk. The page never learns which generator made an image.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { config: null, rater: null, remaining: [], answered: 0, total: 0, realistic: null, busy: false };

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const data = await response.json();
  return { ok: response.ok, status: response.status, data };
}

function show(section) {
  for (const id of ["login", "rating", "done"]) $(id).hidden = id !== section;
}

function current() {
  return state.remaining[0];
}

function render() {
  $("progress").dataset.answered = String(state.answered);
  $("progress").dataset.total = String(state.total);
  $("progress").textContent = `${state.rater}: ${state.answered} of ${state.total} answered`;
  const item = current();
  if (!item) {
    finish();
    return;
  }
  show("rating");
  $("item").src = item.image;
  $("item").dataset.item = item.id;
  $("item").dataset.class = String(item.class);
  $("class-name").textContent = item.class_name;
  $("realism").hidden = false;
  $("which").hidden = true;
  state.realistic = null;
}

async function send(realistic, cls) {
  const item = current();
  state.busy = true;
  $("status").textContent = "";
  try {
    const body = JSON.stringify({ rater: state.rater, item: item.id, realistic, class: cls });
    const reply = await getJSON("/api/answer", { method: "POST", headers: { "Content-Type": "application/json" }, body });
    if (reply.ok || reply.status === 409) {  // 409: saved before (e.g. a reply lost on the way)
      state.remaining.shift();
      state.answered = reply.data.answered;
      render();
    } else {
      $("status").textContent = `not saved: ${reply.data.error}`;
    }
  } catch (error) {
    $("status").textContent = "not saved: the server does not answer; press the key again once it is back";
  } finally {
    state.busy = false;
  }
}

function choose(realistic) {
  if (state.busy || !current()) return;
  if (state.config.ask_class) {
    state.realistic = realistic;
    $("realism").hidden = true;
    $("which").hidden = false;
  } else {
    send(realistic, null);
  }
}

function chooseClass(k) {
  if (state.busy || state.realistic === null || k >= state.config.class_names.length) return;
  send(state.realistic, k);
}

async function finish() {
  show("done");
  // The server shows the table only to a rater who has answered every item (the page stays blind before).
  const reply = await getJSON(`/api/table?rater=${encodeURIComponent(state.rater)}`);
  if (!reply.ok) {
    $("table").textContent = reply.data.error;
    return;
  }
  $("markdown").textContent = reply.data.markdown;
  const table = reply.data.table;
  const labels = { orig: "G_orig", attack: "AT-GAN", real: "real" };
  const head = ["class", ...table.sources.map((s) => `${labels[s]} % realistic`), "ratio"];
  const cell = (c) => (c.percent === null ? "–" : `${c.percent.toFixed(1)} (${c.realistic}/${c.n})`);
  const rows = [...table.classes, table.all].map((row) => [
    row.class === null ? row.name : `${row.class} ${row.name}`,
    ...table.sources.map((s) => cell(row[s])),
    row.ratio === null ? "–" : row.ratio.toFixed(3),
  ]);
  const html = document.createElement("table");
  for (const [i, values] of [head, ...rows].entries()) {
    const tr = html.insertRow();
    for (const value of values) {
      const td = document.createElement(i === 0 ? "th" : "td");
      td.textContent = value;
      tr.appendChild(td);
    }
  }
  $("table").replaceChildren(html);
}

async function start(rater) {
  state.rater = rater;
  localStorage.setItem("atgan-rater", rater);
  const url = new URL(window.location);
  url.searchParams.set("rater", rater);
  history.replaceState(null, "", url);
  const reply = await getJSON(`/api/state?rater=${encodeURIComponent(rater)}`);
  if (!reply.ok) {
    show("login");
    $("login-error").textContent = reply.data.error;
    return;
  }
  state.remaining = reply.data.remaining;
  state.answered = reply.data.answered;
  state.total = reply.data.total;
  render();
}

document.addEventListener("keydown", (event) => {
  if ($("rating").hidden || event.ctrlKey || event.metaKey || event.altKey) return;
  const key = event.key.toLowerCase();
  if (key === "y") choose(true);
  else if (key === "n") choose(false);
  else if (/^[0-9]$/.test(key)) chooseClass(Number(key));
});

async function main() {
  state.config = (await getJSON("/api/config")).data;
  $("yes").addEventListener("click", () => choose(true));
  $("no").addEventListener("click", () => choose(false));
  state.config.class_names.forEach((name, k) => {
    const button = document.createElement("button");
    button.innerHTML = k < 10 ? `<kbd>${k}</kbd> ` : "";
    button.append(name);
    button.addEventListener("click", () => chooseClass(k));
    $("classes").appendChild(button);
  });
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    start($("rater-name").value.trim());
  });
  const rater = new URL(window.location).searchParams.get("rater") || state.config.rater;
  if (rater) start(rater);
  else {
    $("rater-name").value = localStorage.getItem("atgan-rater") || "";
    show("login");
  }
}

main();
