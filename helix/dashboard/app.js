// The Helix dashboard: a client of the public API like any other. It keeps the user's JWT
// (from a password login, or exchanged once for an API key, which is then forgotten) in
// sessionStorage, sends it in the Authorization header, and opens event streams with
// short-lived stream tokens. Every value from the API is put into the page as text, never as
// markup.

const API = "/api/v1";
const SESSION = "helix.session";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
// The job stream's event types the page listens for (EventSource only delivers named events to
// listeners of that name); the job's view is read again after any of them.
const JOB_EVENTS = [
  "job.queued", "job.claimed", "job.started", "job.lease_renewed", "job.progress",
  "job.phase_started", "job.phase_output", "job.phase_completed", "job.phase_failed",
  "job.phase_skipped", "job.phase_file", "job.phase_cost", "job.phase_message",
  "job.phase_resources", "job.artifact_stored", "job.waiting", "job.retry_scheduled",
  "job.stuck", "job.pause_requested", "job.paused", "job.resumed", "job.cancel_requested",
  "job.requeued", "job.completed", "job.failed", "job.cancelled",
];
const PROJECT_EVENTS = [
  "project.created", "project.updated", "project.status_changed", "project.message_posted",
  "project.phases_planned", "project.archived", "project.unarchived", ...JOB_EVENTS,
];

// ---- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, envelope, requestId) {
    const error = (envelope && envelope.error) || {};
    super(error.message || `request failed (${status})`);
    this.status = status;
    this.code = error.code || "ERROR";
    this.details = error.details || {};
    this.requestId = requestId || (envelope && envelope.request_id) || null;
  }
}

function uuid4() {
  // crypto.randomUUID needs a secure context; getRandomValues works on plain http too.
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function session() {
  try {
    return JSON.parse(sessionStorage.getItem(SESSION));
  } catch {
    return null;
  }
}

function url(path) {
  return path.startsWith("/api/") || path.startsWith("/readyz") || path.startsWith("/metrics")
    ? path
    : API + path;
}

async function call(method, path, body, options = {}) {
  const headers = { Accept: "application/json", ...(options.headers || {}) };
  const current = session();
  if (current && !headers["X-API-Key"]) headers.Authorization = `Bearer ${current.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method === "POST") headers["Idempotency-Key"] = uuid4();
  let resp;
  try {
    resp = await fetch(url(path), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
  } catch {
    throw new ApiError(0, { error: { code: "NETWORK", message: "Helix cannot be reached" } });
  }
  const type = resp.headers.get("Content-Type") || "";
  let payload = null;
  if (resp.status !== 204) payload = type.includes("json") ? await resp.json() : await resp.text();
  if (!resp.ok) {
    const error = new ApiError(resp.status, payload, resp.headers.get("X-Request-ID"));
    if (resp.status === 401 && current && !options.signIn) signedOut("Your session has ended; sign in again.");
    throw error;
  }
  return options.full ? { status: resp.status, body: payload, headers: resp.headers } : payload;
}

// Every page of a list, following `next` until there is none or `max` items were read.
async function pages(path, max = 500) {
  const items = [];
  let next = path;
  while (next && items.length < max) {
    const page = await call("GET", next);
    items.push(...page.items);
    next = page.has_more ? page.next : null;
  }
  return { items, more: Boolean(next) };
}

// ---- the page -----------------------------------------------------------------------------

function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

const main = () => document.getElementById("main");

function notify(message, ok = false) {
  const box = document.getElementById("notice");
  box.replaceChildren(message ? h("p", { class: ok ? "ok" : "", text: message }) : "");
  if (message && ok) setTimeout(() => box.replaceChildren(), 4000);
}

function describe(error) {
  if (!(error instanceof ApiError)) return String(error);
  if (error.status === 404 && error.code === "NOT_FOUND") return "Not found: it does not exist, or you may not see it.";
  const field = error.details && error.details.field ? ` (${error.details.field})` : "";
  return `${error.message}${field}`;
}

function badge(status) {
  return h("span", { class: `badge s-${String(status).replace(/[^a-z_]/g, "")}`, text: status });
}

function when(value) {
  if (!value) return "—";
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? String(value) : at.toLocaleString();
}

function seconds(value) {
  if (value === null || value === undefined) return "—";
  return value < 60 ? `${value.toFixed(1)} s` : `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function cost(value) {
  if (!value) return "—";
  return `${value.tokens || 0} tokens, $${Number(value.usd || 0).toFixed(4)}`;
}

function facts(pairs) {
  return h("dl", { class: "facts" }, pairs.map(([k, v]) => [h("dt", { text: k }), h("dd", {}, v)]));
}

function field(label, input) {
  return h("label", {}, h("span", { text: label }), input);
}

// A form whose submit runs `action(values)`; an API error is shown beside the form and the
// field it names is marked invalid.
function form(props, children, action) {
  const error = h("p", { class: "error-text", role: "alert" });
  const el = h("form", { novalidate: true, ...props }, children, error);
  el.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    for (const input of el.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
    const button = el.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      await action(Object.fromEntries(new FormData(el)), el);
    } catch (e) {
      error.textContent = describe(e);
      const name = e instanceof ApiError && e.details.field ? String(e.details.field).split(/[.[]/)[0] : null;
      const input = name && el.elements.namedItem(name);
      if (input && input.setAttribute) input.setAttribute("aria-invalid", "true");
    } finally {
      if (button) button.disabled = false;
    }
  });
  return el;
}

function button(label, action, props = {}) {
  const el = h("button", { type: "button", ...props, text: label });
  el.addEventListener("click", async () => {
    el.disabled = true;
    try {
      await action();
    } catch (e) {
      notify(describe(e));
    } finally {
      el.disabled = false;
    }
  });
  return el;
}

async function download(path, name) {
  const current = session();
  const resp = await fetch(url(path), { headers: { Authorization: `Bearer ${current.token}` } });
  if (!resp.ok) throw new ApiError(resp.status, await resp.json().catch(() => null));
  const link = h("a", { href: URL.createObjectURL(await resp.blob()), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

// ---- sessions -----------------------------------------------------------------------------

let refreshTimer = null;

function signedIn(answer) {
  sessionStorage.setItem(SESSION, JSON.stringify({ token: answer.token, expires_at: answer.expires_at, user: answer.user }));
  scheduleRefresh();
  chrome();
}

function scheduleRefresh() {
  clearTimeout(refreshTimer);
  const current = session();
  if (!current) return;
  // A fresh JWT a minute before this one expires (with the same scopes), so a long watch goes on.
  const wait = Math.max(5000, new Date(current.expires_at).getTime() - Date.now() - 60000);
  refreshTimer = setTimeout(async () => {
    try {
      signedIn(await call("POST", "/auth/token"));
    } catch {
      /* a 401 signs out */
    }
  }, wait);
}

function signedOut(message) {
  clearTimeout(refreshTimer);
  sessionStorage.removeItem(SESSION);
  chrome();
  if (!location.hash.startsWith("#/login")) {
    const back = location.hash && location.hash !== "#/login" ? location.hash : "";
    location.hash = back ? `#/login?next=${encodeURIComponent(back)}` : "#/login";
  }
  if (message) notify(message);
}

function isAdmin() {
  const current = session();
  return Boolean(current && current.user && current.user.role === "admin");
}

function chrome() {
  const current = session();
  document.getElementById("nav").hidden = !current;
  document.getElementById("who").hidden = !current;
  document.getElementById("who-name").textContent = current ? `${current.user.username} (${current.user.role})` : "";
  for (const link of document.querySelectorAll("[data-role=admin]")) link.hidden = !isAdmin();
}

function loginPage(_, query) {
  const next = query.get("next") || "#/projects";
  const done = (answer) => {
    signedIn(answer);
    notify("");
    location.hash = next.startsWith("#/") ? next : "#/projects";
  };
  return h("section", { class: "login" },
    h("h1", { text: "Sign in to Helix" }),
    h("div", { class: "panel" },
      form({ id: "login", class: "stack", "aria-label": "Sign in with a password" }, [
        field("Username", h("input", { name: "username", autocomplete: "username", required: true })),
        field("Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
        h("button", { type: "submit", text: "Sign in" }),
      ], async (v) => done(await call("POST", "/auth/login", { username: v.username, password: v.password }, { signIn: true })))),
    h("div", { class: "panel" },
      form({ id: "key-login", class: "stack", "aria-label": "Sign in with an API key" }, [
        field("API key", h("input", { name: "api_key", type: "password", autocomplete: "off", required: true })),
        h("p", { class: "muted", text: "The key is exchanged once for a session token and is not kept." }),
        h("button", { type: "submit", class: "secondary", text: "Use API key" }),
      ], async (v) => done(await call("POST", "/auth/token", undefined, { signIn: true, headers: { "X-API-Key": v.api_key.trim() } })))));
}

// ---- streams ------------------------------------------------------------------------------

// Follows a stream from the position after `after` (null: from its start): each event once, in
// order, across dropped connections, server restarts and expired stream tokens. `onEvent` gets
// (type, event); `onState` "live", "reconnecting" or "done".
function follow(path, types, after, onEvent, onState) {
  let last = after;
  let source = null;
  let stopped = false;
  let finished = false;
  let delay = 500;
  let timer = null;

  const retry = () => {
    if (stopped || finished) return;
    onState("reconnecting");
    clearTimeout(timer);
    timer = setTimeout(open, delay);
    delay = Math.min(delay * 2, 8000);
  };

  const open = async () => {
    if (stopped) return;
    let token;
    try {
      token = (await call("POST", "/stream-tokens")).token;
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return;
      retry();
      return;
    }
    if (stopped) return;
    const query = new URLSearchParams({ access_token: token });
    if (last !== null) query.set("after", String(last));
    source = new EventSource(`${url(path)}?${query}`);
    const seen = (type) => (e) => {
      const id = Number(e.lastEventId);
      if (last !== null && id <= last) return; // already shown: a replay after a reconnect
      last = id;
      delay = 500;
      onEvent(type, JSON.parse(e.data));
    };
    for (const type of types) source.addEventListener(type, seen(type));
    source.addEventListener("caught_up", () => onState("live"));
    source.addEventListener("done", () => {
      finished = true;
      source.close();
      onState("done");
    });
    source.addEventListener("error", (e) => {
      if (e.data) {
        // The server ended the stream and said why (an expired token, the database gone).
        source.close();
        retry();
      } else if (source.readyState === EventSource.CLOSED) {
        retry(); // a reconnect was refused (503 while restarting, an expired token)
      } else {
        onState("reconnecting"); // the browser reconnects by itself with Last-Event-ID
      }
    });
  };

  open();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
      if (source) source.close();
    },
  };
}

// Calls `fn` at most once per `ms`, after the last request.
function debounce(fn, ms) {
  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
}

// ---- projects -----------------------------------------------------------------------------

const PROJECT_STATUSES = ["draft", "discussing", "ready", "running", "paused", "completed", "failed"];

function projectsPage(_, query) {
  const list = h("div", { class: "table-wrap", "aria-live": "polite" });
  const search = h("input", { name: "q", type: "search", value: query.get("q") || "", placeholder: "name or description" });
  const status = h("select", { name: "status" }, h("option", { value: "", text: "any" }),
    PROJECT_STATUSES.map((s) => h("option", { value: s, text: s, selected: query.get("status") === s })));
  const archived = h("input", { name: "archived", type: "checkbox", checked: query.get("archived") === "true" });
  let loaded = [];
  let more = false;

  const show = () => {
    const needle = search.value.trim().toLowerCase();
    const rows = loaded.filter((p) => !needle || `${p.name} ${p.description}`.toLowerCase().includes(needle));
    list.replaceChildren(rows.length === 0 ? h("p", { class: "muted", text: "No projects match." }) :
      h("table", { id: "projects" },
        h("thead", {}, h("tr", {}, ["Name", "Status", "Type", "Updated"].map((t) => h("th", { scope: "col", text: t })))),
        h("tbody", {}, rows.map((p) => h("tr", { "data-project": p.id },
          h("td", {}, h("a", { href: `#/projects/${p.id}`, text: p.name })),
          h("td", {}, badge(p.status)), h("td", { text: p.project_type }), h("td", { text: when(p.updated_at) }))))),
    more ? h("p", { class: "muted", text: "Showing the newest 500; narrow the filters to see older ones." }) : "");
  };
  const load = async () => {
    const params = new URLSearchParams({ limit: "100" });
    if (status.value) params.set("status", status.value);
    if (archived.checked) params.set("archived", "true");
    ({ items: loaded, more } = await pages(`/projects?${params}`));
    show();
  };
  search.addEventListener("input", show);
  status.addEventListener("change", () => load().catch((e) => notify(describe(e))));
  archived.addEventListener("change", () => load().catch((e) => notify(describe(e))));
  load().catch((e) => notify(describe(e)));

  return h("section", {},
    h("h1", { text: "Projects" }),
    h("div", { class: "grid" },
      h("div", {},
        h("div", { class: "panel" },
          h("div", { class: "inline", role: "search" },
            field("Search", search), field("Status", status),
            h("label", { class: "check" }, archived, h("span", { text: "Archived" })))),
        h("div", { class: "panel" }, list)),
      h("div", {},
        h("div", { class: "panel" },
          h("h2", { text: "Quick action" }),
          form({ id: "quick-action", class: "stack" }, [
            field("What should be done?", h("textarea", { name: "prompt", required: true })),
            h("button", { type: "submit", text: "Run" }),
          ], async (v) => {
            const run = await call("POST", "/quick-action", { prompt: v.prompt });
            location.hash = `#/jobs/${run.job_id}`;
          })),
        h("div", { class: "panel" },
          h("h2", { text: "New project" }),
          form({ id: "new-project", class: "stack" }, [
            field("Name", h("input", { name: "name", required: true })),
            field("Description", h("textarea", { name: "description" })),
            field("Template (optional)", h("input", { name: "template", placeholder: "ai-development" })),
            field("Phases as JSON (optional, instead of a template)", h("textarea", { name: "phases", class: "mono",
              placeholder: '[{"name": "build", "command": ["make"]}]' })),
            h("button", { type: "submit", text: "Create" }),
          ], async (v) => {
            const body = { name: v.name };
            if (v.description) body.description = v.description;
            if (v.template.trim()) body.template = v.template.trim();
            if (v.phases.trim()) {
              try {
                body.phases = JSON.parse(v.phases);
              } catch {
                throw new Error("Phases must be JSON: a list of {name, command} objects.");
              }
            }
            const project = await call("POST", "/projects", body);
            location.hash = `#/projects/${project.id}`;
          })))));
}

function projectPage([id], query) {
  const asOf = query.get("as_of");
  const root = h("section", {}, h("p", { class: "muted", text: "Loading…" }));
  let stream = null;
  // The log position the page shows the project at: a stream event at or before it is already
  // on the page (an action re-renders with its own result), so it does not render again and
  // take the form a person is about to use from under them.
  let shown = 0;
  let drawn = null;

  const render = async () => {
    const path = `/projects/${id}` + (asOf ? `?as_of=${encodeURIComponent(asOf)}` : "");
    const [read, messages, jobs] = await Promise.all([
      call("GET", path, undefined, { full: true }),
      asOf ? Promise.resolve({ items: [] }) : pages(`/projects/${id}/messages?limit=200`),
      asOf ? Promise.resolve({ items: [] }) : pages(`/jobs?project_id=${id}&limit=100`, 100),
    ]);
    const project = read.body;
    shown = Math.max(shown, Number(read.headers.get("X-Helix-Position")) || 0);
    // The same project, thread and jobs as on the page already: nothing to redraw (an event
    // the page had shown, its position not yet known when it was read).
    const model = JSON.stringify([project, messages.items, jobs.items]);
    if (model === drawn) return;
    drawn = model;
    root.replaceChildren(
      h("h1", {}, project.name, " ", badge(project.status), project.archived ? [" ", badge("archived")] : ""),
      asOf ? h("p", { class: "notice-inline", role: "note" }, `As it was at log position ${asOf}. `,
        h("a", { href: `#/projects/${id}`, text: "Show it now" })) : "",
      h("div", { class: "grid" },
        h("div", {},
          h("div", { class: "panel" },
            h("p", { text: project.description || "No description." }),
            facts([
              ["Type", project.project_type], ["Created", when(project.created_at)],
              ["Updated", when(project.updated_at)], ["Phases", project.phases.map((p) => p.name).join(", ") || "—"],
              ["Latest job", project.latest_job_id ? h("a", { href: `#/jobs/${project.latest_job_id}`, text: project.latest_job_id }) : "—"],
            ]),
            asOf ? "" : projectActions(project, render)),
          asOf ? "" : h("div", { class: "panel" }, h("h2", { text: "Discussion" }), thread(project, messages.items, render))),
        asOf ? "" : h("div", {},
          h("div", { class: "panel" }, h("h2", { text: "Jobs" }),
            jobs.items.length === 0 ? h("p", { class: "muted", text: "No jobs yet." }) :
              h("ul", { id: "jobs" }, jobs.items.map((j) => h("li", {},
                h("a", { href: `#/jobs/${j.id}`, text: when(j.created_at) }), " ", badge(j.status))))))));
  };

  render().then(() => {
    if (asOf) return;
    const again = debounce(() => render().catch((e) => notify(describe(e))), 300);
    stream = follow(`/projects/${id}/stream`, PROJECT_EVENTS, shown || null, (type, event) => {
      if (type !== "job.phase_output" && event.position > shown) again();
    }, () => {});
  }).catch((e) => root.replaceChildren(h("p", { class: "error-text", role: "alert", text: describe(e) })));
  root.cleanup = () => stream && stream.stop();
  return root;
}

function projectActions(project, render) {
  const act = (label, path, body, props) => button(label, async () => {
    await call("POST", `/projects/${project.id}/${path}`, body);
    notify(`${label}: done`, true);
    await render();
  }, props);
  const s = project.status;
  const actions = h("div", { class: "actions" });
  if (s === "draft" || s === "discussing") actions.append(act("Mark ready", "ready"));
  if (s === "running") {
    const now = h("input", { type: "checkbox", id: "pause-now" });
    actions.append(button("Pause", async () => {
      await call("POST", `/projects/${project.id}/pause`, now.checked ? { now: true } : {});
      notify("Pause requested", true);
      await render();
    }, { id: "pause" }), h("label", { class: "check", for: "pause-now" }, now, " stop the running phase now"));
  }
  if (s === "paused") actions.append(act("Resume", "resume", {}, { id: "resume" }));
  if (s === "running" || s === "paused") actions.append(act("Cancel", "cancel", {}, { class: "danger", id: "cancel" }));
  if (!project.archived) {
    actions.append(button("Archive", async () => {
      if (!confirm(`Archive ${project.name}? It leaves the list; nothing is deleted.`)) return;
      await call("DELETE", `/projects/${project.id}`);
      await render();
    }, { class: "danger" }));
  }
  const executable = ["ready", "completed", "failed"].includes(s);
  const run = executable ? form({ id: "execute", class: "inline" }, [
    field("Model (optional)", h("input", { name: "model" })),
    field("Start at phase", h("select", { name: "start_phase" }, h("option", { value: "", text: "the first" }),
      project.phases.map((p) => h("option", { value: p.name, text: p.name })))),
    h("button", { type: "submit", text: "Execute" }),
  ], async (v) => {
    const body = {};
    if (v.model.trim()) body.model = v.model.trim();
    if (v.start_phase) body.start_phase = v.start_phase;
    const answer = await call("POST", `/projects/${project.id}/execute`, body);
    for (const warning of answer.warnings || []) notify(typeof warning === "string" ? warning : warning.message);
    location.hash = `#/jobs/${answer.job_id}`;
  }) : "";
  return h("div", {}, actions, run);
}

function thread(project, messages, render) {
  return h("div", {},
    messages.length === 0 ? h("p", { class: "muted", text: "No messages yet." }) :
      h("ol", { class: "thread", id: "thread" }, messages.map((m) => h("li", {},
        h("span", { class: "role", text: m.author || m.role }), " ", h("span", { class: "muted", text: `${m.role} · ${when(m.at)}` }),
        h("div", { text: m.content })))),
    form({ id: "message", class: "stack" }, [
      field("Message", h("textarea", { name: "content", required: true })),
      h("button", { type: "submit", text: "Post" }),
    ], async (v, el) => {
      await call("POST", `/projects/${project.id}/messages`, { content: v.content });
      el.reset();
      await render();
    }));
}

// ---- jobs ---------------------------------------------------------------------------------

function jobPage([id], query) {
  const asOf = query.get("as_of");
  const header = h("div", {}, h("p", { class: "muted", text: "Loading…" }));
  const timeline = h("ol", { class: "timeline", id: "timeline" });
  const files = h("div", { id: "files" });
  const output = h("pre", { class: "output", id: "output", tabindex: "0", "aria-label": "Phase output", "aria-live": "off" });
  const events = h("ul", { class: "events", id: "events", "aria-label": "Job events" });
  const state = h("span", { id: "stream-state", class: "muted", role: "status" });
  const latest = h("button", { type: "button", class: "secondary", hidden: true, text: "Jump to latest output" });
  let pinned = true; // follow the output until the user scrolls up
  let stream = null;
  let job = null;
  let filesChanged = true; // the stored files are read again only when a file event says so

  output.addEventListener("scroll", () => {
    pinned = output.scrollTop + output.clientHeight >= output.scrollHeight - 24;
    latest.hidden = pinned;
  });
  latest.addEventListener("click", () => {
    output.scrollTop = output.scrollHeight;
    pinned = true;
    latest.hidden = true;
  });

  const render = async () => {
    job = await call("GET", `/jobs/${id}` + (asOf ? `?as_of=${encodeURIComponent(asOf)}` : ""));
    const waiting = job.waiting ? h("p", { class: "s-waiting", id: "waiting" }, `Waiting: ${job.waiting.reason}`,
      job.waiting.capabilities && job.waiting.capabilities.length ? ` (needs ${job.waiting.capabilities.join(", ")})` : "") : "";
    header.replaceChildren(
      h("h1", {}, "Job ", badge(job.status)),
      asOf ? h("p", { role: "note" }, `As it was at log position ${asOf}. `, h("a", { href: `#/jobs/${id}`, text: "Show it now" })) : "",
      waiting,
      h("div", { class: "progress", role: "progressbar", "aria-label": "Progress", "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(job.progress || 0) },
        h("div", { style: null })),
      facts([
        ["Project", h("a", { href: `#/projects/${job.project_id}`, text: job.project_id })],
        ["Progress", `${job.progress || 0}%`], ["Cost", cost(job.cost)], ["Attempt", `${job.attempt} of ${job.max_attempts}`],
        ["Model", job.model || "—"], ["Worker", job.worker_id || "—"], ["Created", when(job.created_at)],
        ["Started", when(job.started_at)], ["Finished", when(job.finished_at)],
        ["Error", job.error ? h("span", { class: "error-text", text: job.error }) : "—"],
      ]),
      asOf ? "" : jobActions(job, render));
    header.querySelector(".progress > div").style.width = `${Math.max(0, Math.min(100, job.progress || 0))}%`;
    timeline.replaceChildren(...job.phases.map((p) => h("li", { "data-phase": p.name, "data-status": p.status },
      h("strong", { text: `${p.ordinal}. ${p.name}` }), badge(p.status),
      h("span", { class: "muted" }, `duration ${seconds(p.duration_s)} · ${p.output_lines} lines · ${cost(p.cost)}` +
        (p.exit_code !== null && p.exit_code !== undefined ? ` · exit ${p.exit_code}` : "")),
      p.error ? h("span", { class: "error-text", text: p.error }) : h("span", {}))));
    if (filesChanged) {
      filesChanged = false;
      renderFiles(job).catch((e) => notify(describe(e)));
    }
  };

  const renderFiles = async (view) => {
    const reported = view.phases.flatMap((p) => (p.files || []).map((f) => ({ phase: p.name, ...(typeof f === "string" ? { path: f } : f) })));
    let stored = [];
    try {
      stored = (await pages(`/jobs/${id}/files?limit=100`, 200)).items;
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 404)) throw e;
    }
    const byPath = new Map(stored.map((f) => [f.path, f]));
    const rows = [...new Map([...reported, ...stored].map((f) => [f.path, f])).values()];
    files.replaceChildren(rows.length === 0 ? h("p", { class: "muted", text: "No files reported." }) :
      h("ul", {}, rows.map((f) => {
        const artifact = byPath.get(f.path);
        const canDownload = artifact && artifact.stored !== false;
        return h("li", {}, h("code", { text: f.path }), ` · ${f.phase || ""} ${f.change || f.kind || ""}`,
          artifact && artifact.size !== undefined ? ` · ${artifact.size} bytes` : "",
          canDownload ? [" ", button("Download", () => download(artifact.download_url, f.path.split("/").pop()), { class: "secondary" })] :
            artifact && artifact.reason ? h("span", { class: "muted", text: ` · not stored: ${artifact.reason}` }) : "");
      })));
  };

  const addOutput = (data) => {
    const fragment = document.createDocumentFragment();
    data.lines.forEach((line, i) => {
      fragment.append(h("span", { class: `line${data.stream === "stderr" ? " err" : ""}` },
        h("span", { class: "tag", text: `[${data.phase}#${data.attempt || 1} ${data.first_line_no + i}] ` }), line, "\n"));
    });
    output.append(fragment);
    if (pinned) output.scrollTop = output.scrollHeight;
  };

  const onEvent = (type, event) => {
    events.append(h("li", {}, h("span", { class: "muted", text: `${event.position} ` }), type,
      event.data && event.data.phase ? ` · ${event.data.phase}` : ""));
    events.scrollTop = events.scrollHeight;
    if (type === "job.phase_output") {
      addOutput(event.data);
      return;
    }
    if (type === "job.phase_file" || type === "job.artifact_stored" || TERMINAL.has(type.slice(4))) filesChanged = true;
    again();
  };
  const again = debounce(() => render().catch((e) => notify(describe(e))), 250);

  const root = h("section", {}, header,
    h("div", { class: "grid" },
      h("div", {},
        h("div", { class: "panel" }, h("h2", {}, "Output ", state), output, h("div", { class: "actions" }, latest)),
        h("div", { class: "panel" }, h("h2", { text: "Events" }), events)),
      h("div", {},
        h("div", { class: "panel" }, h("h2", { text: "Phases" }), timeline),
        h("div", { class: "panel" }, h("h2", { text: "Files" }), files))));

  render().then(() => {
    if (asOf) {
      state.textContent = "";
      return;
    }
    stream = follow(`/stream/${id}`, JOB_EVENTS, null, onEvent, (s) => {
      state.textContent = { live: "· live", reconnecting: "· reconnecting…", done: "· finished" }[s] || "";
      state.dataset.state = s;
      if (s === "done") render().catch(() => {});
    });
  }).catch((e) => header.replaceChildren(h("p", { class: "error-text", role: "alert", text: describe(e) })));
  root.cleanup = () => stream && stream.stop();
  return root;
}

function jobActions(job, render) {
  const actions = h("div", { class: "actions" });
  if (!TERMINAL.has(job.status)) {
    actions.append(button("Cancel job", async () => {
      await call("POST", `/jobs/${job.id}/cancel`, {});
      await render();
    }, { class: "danger", id: "cancel-job" }));
  }
  if (job.status === "running" || job.status === "queued") {
    actions.append(button("Pause", async () => {
      await call("POST", `/projects/${job.project_id}/pause`, {});
      notify("Pause requested: the job stops before its next phase", true);
      await render();
    }, { class: "secondary", id: "pause-job" }));
  }
  if (job.status === "paused") {
    actions.append(button("Resume", async () => {
      await call("POST", `/projects/${job.project_id}/resume`, {});
      await render();
    }, { id: "resume-job" }));
  }
  return actions;
}

// ---- operators ----------------------------------------------------------------------------

function table(id, headings, rows) {
  return h("div", { class: "table-wrap" }, rows.length === 0 ? h("p", { class: "muted", text: "Nothing here yet." }) :
    h("table", { id }, h("thead", {}, h("tr", {}, headings.map((t) => h("th", { scope: "col", text: t })))),
      h("tbody", {}, rows)));
}

function workersPage() {
  const root = h("section", {}, h("h1", { text: "Workers" }), h("p", { class: "muted", text: "Loading…" }));
  pages("/workers?limit=100").then(({ items }) => {
    root.replaceChildren(h("h1", { text: "Workers" }), h("div", { class: "panel" },
      table("workers", ["Name", "Host", "State", "Capabilities", "Current job", "Last heartbeat"], items.map((w) => h("tr", {},
        h("td", { text: w.name }), h("td", { text: w.hostname }),
        h("td", {}, badge(w.online ? "online" : "offline"), " ", badge(w.status)),
        h("td", { text: (w.capabilities || []).join(", ") }),
        h("td", {}, w.current_job_id ? h("a", { href: `#/jobs/${w.current_job_id}`, text: "open" }) : "—"),
        h("td", { text: when(w.last_heartbeat_at) }))))));
  }).catch((e) => notify(describe(e)));
  return root;
}

function webhooksPage() {
  const list = h("div", {});
  const secret = h("div", { "aria-live": "polite" });
  const load = async () => {
    const { items } = await pages("/webhooks?limit=100");
    list.replaceChildren(table("webhooks", ["URL", "Event types", "State"], items.map((w) => h("tr", {},
      h("td", {}, h("a", { href: `#/webhooks/${w.id}`, text: w.url })), h("td", { text: (w.event_types || []).join(", ") }),
      h("td", {}, badge(w.enabled === false ? "disabled" : "enabled"))))));
  };
  load().catch((e) => notify(describe(e)));
  return h("section", {}, h("h1", { text: "Webhooks" }),
    h("div", { class: "grid" }, h("div", { class: "panel" }, list),
      h("div", { class: "panel" }, h("h2", { text: "New endpoint" }),
        form({ id: "new-webhook", class: "stack" }, [
          field("URL", h("input", { name: "url", type: "url", required: true, placeholder: "https://example.com/hooks" })),
          field("Event types (comma-separated globs)", h("input", { name: "event_types", value: "*" })),
          h("button", { type: "submit", text: "Create" }),
        ], async (v, el) => {
          const types = v.event_types.split(",").map((t) => t.trim()).filter(Boolean);
          const made = await call("POST", "/webhooks", { url: v.url, event_types: types.length ? types : ["*"] });
          el.reset();
          secret.replaceChildren(showSecret(made.secret));
          await load();
        }), secret)));
}

function showSecret(value) {
  return h("div", { class: "panel", id: "secret" }, h("p", { text: "The signing secret, shown only this once:" }),
    h("pre", { class: "json", text: value }));
}

function webhookPage([id]) {
  const root = h("section", {}, h("p", { class: "muted", text: "Loading…" }));
  const deliveries = h("div", {});
  const detail = h("div", { "aria-live": "polite" });
  const status = h("select", { name: "status" }, ["", "pending", "succeeded", "dead"].map((s) => h("option", { value: s, text: s || "any" })));

  const loadDeliveries = async () => {
    const params = new URLSearchParams({ limit: "50" });
    if (status.value) params.set("status", status.value);
    const page = await call("GET", `/webhooks/${id}/deliveries?${params}`);
    deliveries.replaceChildren(table("deliveries", ["Event", "Status", "Attempts", "Created", ""], page.items.map((d) => h("tr", {},
      h("td", { text: `${d.event_type}${d.position === null ? "" : ` @${d.position}`}${d.kind && d.kind !== "log" ? ` (${d.kind})` : ""}` }), h("td", {}, badge(d.status)),
      h("td", { text: String(d.attempts) }), h("td", { text: when(d.created_at) }),
      h("td", {}, button("Attempts", async () => showDelivery(d.id), { class: "secondary" }), " ",
        button("Retry", async () => {
          await call("POST", `/webhooks/${id}/deliveries/${d.id}/retry`);
          notify("Queued again", true);
          await loadDeliveries();
        }, { class: "secondary" }))))));
  };
  const showDelivery = async (deliveryId) => {
    const d = await call("GET", `/webhooks/${id}/deliveries/${deliveryId}`);
    detail.replaceChildren(h("h2", { text: "Attempts" }), table("attempts", ["#", "Started", "Status", "Duration", "Error"],
      (d.attempt_log || []).map((a) => h("tr", {}, h("td", { text: String(a.attempt) }), h("td", { text: when(a.started_at) }),
        h("td", { text: a.status_code === null ? "—" : String(a.status_code) }), h("td", { text: `${a.duration_ms} ms` }),
        h("td", { text: a.error ? `${a.error_class || ""} ${a.error}` : "" })))));
  };
  status.addEventListener("change", () => loadDeliveries().catch((e) => notify(describe(e))));

  const render = async () => {
    const w = await call("GET", `/webhooks/${id}`);
    root.replaceChildren(h("h1", { text: w.url }),
      h("div", { class: "panel" }, facts([["Event types", (w.event_types || []).join(", ")], ["Enabled", String(w.enabled)],
        ["Created", when(w.created_at)]]),
        h("div", { class: "actions" },
          button("Send a test", async () => { await call("POST", `/webhooks/${id}/test`); notify("Ping queued", true); await loadDeliveries(); }, { class: "secondary" }),
          button("Rotate secret", async () => {
            const answer = await call("POST", `/webhooks/${id}/rotate-secret`, {});
            detail.replaceChildren(showSecret(answer.secret));
          }, { class: "secondary" })),
        h("div", { class: "grid" },
          form({ id: "replay", class: "inline" }, [field("Replay from position", h("input", { name: "since_position", type: "number", min: "1", required: true })),
            h("button", { type: "submit", class: "secondary", text: "Replay" })], async (v) => {
            const answer = await call("POST", `/webhooks/${id}/replay`, { since_position: Number(v.since_position) });
            notify(`${answer.deliveries} deliveries queued`, true);
            await loadDeliveries();
          }),
          form({ id: "recover", class: "inline" }, [field("Recover failures since", h("input", { name: "since", type: "datetime-local", required: true })),
            h("button", { type: "submit", class: "secondary", text: "Recover" })], async (v) => {
            const answer = await call("POST", `/webhooks/${id}/recover`, { since: new Date(v.since).toISOString() });
            notify(`${answer.deliveries} deliveries queued`, true);
            await loadDeliveries();
          }))),
      h("div", { class: "panel" }, h("h2", { text: "Deliveries" }), h("div", { class: "inline" }, field("Status", status),
        button("Refresh", loadDeliveries, { class: "secondary", id: "refresh-deliveries" })), deliveries, detail));
    await loadDeliveries();
  };
  render().catch((e) => root.replaceChildren(h("p", { class: "error-text", role: "alert", text: describe(e) })));
  return root;
}

function timeTravel(event) {
  const stream = String(event.stream_id || "");
  const id = stream.slice(stream.indexOf("-") + 1);
  if (stream.startsWith("project-")) return `#/projects/${id}?as_of=${event.position}`;
  if (stream.startsWith("job-")) return `#/jobs/${id}?as_of=${event.position}`;
  return null;
}

function auditPage(_, query) {
  const rows = h("tbody", {});
  const more = h("div", { class: "actions" });
  const filters = form({ id: "audit-filters", class: "inline", role: "search" }, [
    field("Type globs", h("input", { name: "type", value: query.get("type") || "", placeholder: "job.*,project.created" })),
    field("Actor", h("input", { name: "actor", value: query.get("actor") || "" })),
    field("Project id", h("input", { name: "project_id", value: query.get("project_id") || "" })),
    field("Since", h("input", { name: "since", type: "datetime-local" })),
    field("Until", h("input", { name: "until", type: "datetime-local" })),
    field("After position", h("input", { name: "after", type: "number", min: "0" })),
    h("button", { type: "submit", text: "Filter" }),
  ], async (v) => load(v, true));

  const load = async (v, fresh, next) => {
    let path = next;
    if (!path) {
      const params = new URLSearchParams({ limit: "100" });
      for (const name of ["type", "actor", "project_id", "after"]) if (v[name] && v[name].trim()) params.set(name, v[name].trim());
      for (const name of ["since", "until"]) if (v[name]) params.set(name, new Date(v[name]).toISOString());
      path = `/events?${params}`;
    }
    const page = await call("GET", path);
    if (fresh) rows.replaceChildren();
    for (const e of page.items) {
      const travel = timeTravel(e);
      rows.append(h("tr", {},
        h("td", { text: String(e.position) }), h("td", { text: when(e.recorded_at) }), h("td", { text: e.type }),
        h("td", { text: (e.metadata && e.metadata.actor) || "" }),
        h("td", {}, h("details", {}, h("summary", { text: e.stream_id }), h("pre", { class: "json", text: JSON.stringify(e.data, null, 2) }))),
        h("td", {}, travel ? h("a", { href: travel, text: "as of here" }) : "")));
    }
    more.replaceChildren(page.has_more ? button("Load more", () => load(v, false, page.next), { class: "secondary" }) : "");
  };
  load({}, true).catch((e) => notify(describe(e)));
  return h("section", {}, h("h1", { text: "Audit log" }), h("div", { class: "panel" }, filters),
    h("div", { class: "panel table-wrap" }, h("table", { id: "audit" },
      h("thead", {}, h("tr", {}, ["Position", "Recorded", "Type", "Actor", "Stream", "Time travel"].map((t) => h("th", { scope: "col", text: t })))),
      rows), more));
}

function metricValue(text, name) {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`));
  return line ? Number(line.slice(line.lastIndexOf(" ") + 1)) : null;
}

function healthPage() {
  const root = h("section", {}, h("h1", { text: "Health" }), h("p", { class: "muted", text: "Loading…" }));
  const load = async () => {
    let ready;
    try {
      ready = await call("GET", "/readyz");
    } catch (e) {
      ready = e instanceof ApiError ? { status: "not ready", ...e.details, message: e.message } : { status: "unreachable" };
    }
    let backlog = "needs access to /metrics";
    try {
      const text = await call("GET", "/metrics", undefined, { headers: { Accept: "text/plain" } });
      const value = metricValue(text, "helix_webhook_dispatcher_backlog_events");
      if (value !== null) backlog = `${value} events`;
    } catch {
      /* /metrics is for loopback or its token */
    }
    const sequencer = ready.sequencer || {};
    const roles = (ready.roles && ready.roles.roles) || {};
    root.replaceChildren(h("h1", {}, "Health ", badge(ready.status === "ready" ? "ok" : "failed")),
      h("div", { class: "panel" }, facts([
        ["Status", ready.message || ready.status], ["Database", String(ready.database)],
        ["Schema", ready.migrations ? `${ready.migrations.current} (head ${ready.migrations.head})` : "—"],
        ["Sequencer", `leader ${sequencer.leader ? "here" : "elsewhere"}, lag ${sequencer.lag_seconds ?? "—"} s, pending ${sequencer.pending ?? "—"}` +
          (sequencer.blocked_by ? `, blocked by ${JSON.stringify(sequencer.blocked_by)}` : "")],
        ["Webhook dispatcher backlog", backlog],
      ])),
      h("div", { class: "panel" }, h("h2", { text: "Roles" }), table("roles", ["Role", "State", "Since", "Restarts", "Error"],
        Object.entries(roles).map(([name, r]) => h("tr", {}, h("td", { text: name }), h("td", {}, badge(r.state)),
          h("td", { text: when(r.since) }), h("td", { text: String(r.restarts) }), h("td", { text: r.error || "" }))))),
      h("div", { class: "actions" }, button("Refresh", load, { class: "secondary" })));
  };
  load().catch((e) => notify(describe(e)));
  return root;
}

// ---- routing ------------------------------------------------------------------------------

const ROUTES = [
  [/^\/login$/, loginPage, "login"],
  [/^\/projects$/, projectsPage, "projects"],
  [/^\/projects\/([0-9a-f-]{36})$/, projectPage, "projects"],
  [/^\/jobs\/([0-9a-f-]{36})$/, jobPage, "projects"],
  [/^\/workers$/, workersPage, "workers"],
  [/^\/webhooks$/, webhooksPage, "webhooks"],
  [/^\/webhooks\/([0-9a-f-]{36})$/, webhookPage, "webhooks"],
  [/^\/audit$/, auditPage, "audit"],
  [/^\/health$/, healthPage, "health"],
];

let page = null;

function route() {
  const hash = location.hash.replace(/^#/, "") || "/projects";
  const [path, search] = hash.split("?", 2);
  if (!session() && path !== "/login") {
    signedOut();
    return;
  }
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  if (page && page.cleanup) page.cleanup();
  notify("");
  if (!found) {
    page = h("section", {}, h("h1", { text: "Not found" }), h("p", {}, h("a", { href: "#/projects", text: "Projects" })));
  } else {
    const [pattern, render, nav] = found;
    page = render(pattern.exec(path).slice(1), new URLSearchParams(search || ""));
    for (const link of document.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
  }
  main().replaceChildren(page);
  const heading = page.querySelector("h1");
  document.title = heading ? `${heading.firstChild.textContent} · Helix` : "Helix";
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await call("POST", "/auth/logout");
  } catch {
    /* signed out either way */
  }
  signedOut("Signed out.");
});

window.addEventListener("hashchange", route);
chrome();
scheduleRefresh();
route();
