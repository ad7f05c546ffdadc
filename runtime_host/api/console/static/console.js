// The console's few behaviours: live sandboxes, charts and logs over
// server-sent events, and the test-event editor. Text from the host (names,
// payloads, log lines) is only ever set with textContent; the one innerHTML
// is the charts' SVG, which the host rendered with every value escaped.
"use strict";

const SANDBOX_COLUMNS = [
  ["function", "Function"], ["sandbox", "Sandbox"], ["state", "State"], ["initialization_type", "Init"],
  ["invocations", "Invocations"], ["freezes", "Freezes"], ["age_s", "Age s"], ["idle_s", "Idle s"],
  ["memory_now_mb", "Mem MB"], ["memory_peak_mb", "Peak MB"], ["cpu_s", "CPU s"],
];
const MAX_LOG_LINES = 500;

function el(name, text, className) {
  const node = document.createElement(name);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function renderSandboxes(target, rows) {
  target.replaceChildren();
  if (!rows.length) {
    target.appendChild(el("p", "No sandbox yet.", "muted"));
    return;
  }
  const table = el("table", null, "grid");
  const head = table.createTHead().insertRow();
  for (const [, title] of SANDBOX_COLUMNS) head.appendChild(el("th", title));
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.sandbox = row.sandbox;
    tr.dataset.state = row.state;
    for (const [key] of SANDBOX_COLUMNS) {
      const td = el("td", row[key] === null || row[key] === undefined ? "" : row[key]);
      if (key === "state") td.className = "state state-" + String(row.state).toLowerCase();
      else if (typeof row[key] === "number") td.className = "num";
      tr.appendChild(td);
    }
  }
  target.appendChild(table);
}

function listen(path, handlers, stateNode) {
  const source = new EventSource(path);
  source.onopen = () => { if (stateNode) { stateNode.textContent = "live"; stateNode.dataset.state = "live"; } };
  source.onerror = () => { if (stateNode) { stateNode.textContent = "reconnecting"; stateNode.dataset.state = "down"; } };
  for (const [name, handle] of Object.entries(handlers)) {
    source.addEventListener(name, (event) => handle(event.data));
  }
  return source;
}

function decodeBase64Utf8(text) {
  const bytes = Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

function reportLine(tail) {
  // Text format: the REPORT line; JSON format: the platform.report record.
  const lines = tail.split("\n").filter((line) => line.startsWith("REPORT ") || line.includes('"platform.report"'));
  return lines.length ? lines[lines.length - 1] : "";
}

function pretty(text) {
  try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
}

function functionPage(page) {
  const select = document.getElementById("saved-events");
  const nameInput = document.getElementById("event-name");
  const bodyInput = document.getElementById("event-body");
  const status = document.getElementById("editor-status");
  const say = (text, bad) => { status.textContent = text; status.className = bad ? "bad" : "muted"; };
  const eventPath = (name) => page.eventsPath + "/" + encodeURIComponent(name);

  async function refreshNames(selected) {
    const reply = await fetch(page.eventsPath);
    const names = (await reply.json()).events;
    select.replaceChildren(el("option", "(new event)"));
    select.options[0].value = "";
    for (const name of names) {
      const option = el("option", name);
      option.value = name;
      select.appendChild(option);
    }
    select.value = selected || "";
  }

  select.addEventListener("change", async () => {
    if (!select.value) { nameInput.value = ""; bodyInput.value = "{}"; say(""); return; }
    const reply = await fetch(eventPath(select.value));
    if (!reply.ok) { say(await reply.text(), true); return; }
    nameInput.value = select.value;
    bodyInput.value = await reply.text();
    say("loaded " + select.value);
  });

  document.getElementById("save").addEventListener("click", async () => {
    const name = nameInput.value.trim();
    if (!name) { say("give the event a name first", true); return; }
    const reply = await fetch(eventPath(name), { method: "PUT", body: bodyInput.value });
    if (!reply.ok) { say(await reply.text(), true); return; }
    await refreshNames(name);
    say("saved " + name);
  });

  document.getElementById("delete").addEventListener("click", async () => {
    const name = select.value;
    if (!name) { say("choose a saved event to delete", true); return; }
    const reply = await fetch(eventPath(name), { method: "DELETE" });
    if (!reply.ok) { say(await reply.text(), true); return; }
    await refreshNames("");
    nameInput.value = "";
    say("deleted " + name);
  });

  const invokeButton = document.getElementById("invoke");
  invokeButton.addEventListener("click", async () => {
    invokeButton.disabled = true;
    say("invoking ...");
    try {
      // The Invoke API itself, as any caller: synchronous, with the log tail.
      const reply = await fetch(page.invokePath, {
        method: "POST", body: bodyInput.value,
        headers: { "X-Amz-Invocation-Type": "RequestResponse", "X-Amz-Log-Type": "Tail" },
      });
      const text = await reply.text();
      const functionError = reply.headers.get("X-Amz-Function-Error");
      const logResult = reply.headers.get("X-Amz-Log-Result");
      const tail = logResult ? decodeBase64Utf8(logResult) : "";
      const result = document.getElementById("result");
      const resultStatus = document.getElementById("result-status");
      result.hidden = false;
      const ok = reply.ok && !functionError;
      resultStatus.textContent = ok ? "succeeded" : (functionError ? "function error (" + functionError + ")" : "failed: HTTP " + reply.status);
      resultStatus.className = ok ? "good" : "bad";
      document.getElementById("result-meta").textContent =
        "RequestId " + (reply.headers.get("x-amzn-RequestId") || "-") + ", HTTP " + reply.status;
      document.getElementById("response").textContent = pretty(text);
      document.getElementById("log-tail").textContent = tail;
      document.getElementById("report").textContent = reportLine(tail);
      say("");
    } catch (error) {
      say("the host did not answer: " + error, true);
    } finally {
      invokeButton.disabled = false;
    }
  });

  const sandboxes = document.getElementById("sandboxes");
  const charts = document.getElementById("charts");
  listen(page.livePath, {
    sandboxes: (data) => renderSandboxes(sandboxes, JSON.parse(data)),
    charts: (data) => { charts.innerHTML = data; },  // SVG the host rendered, every value escaped
  }, document.getElementById("live-state"));

  const logs = document.getElementById("logs");
  listen(page.logsPath, {
    log: (data) => {
      const event = JSON.parse(data);
      const line = el("div", null, "line");
      line.appendChild(el("span", new Date(event.t * 1000).toISOString().slice(11, 23) + " ", "muted"));
      line.appendChild(el("span", event.message));
      line.title = event.stream + (event.requestId ? " " + event.requestId : "");
      const atBottom = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.appendChild(line);
      while (logs.childElementCount > MAX_LOG_LINES) logs.firstElementChild.remove();
      if (atBottom) logs.scrollTop = logs.scrollHeight;
    },
  }, document.getElementById("logs-state"));
}

document.addEventListener("DOMContentLoaded", () => {
  const data = document.getElementById("page-data");
  if (data) {
    functionPage(JSON.parse(data.textContent));
    return;
  }
  const sandboxes = document.getElementById("sandboxes");
  if (sandboxes && sandboxes.dataset.live) {
    listen(sandboxes.dataset.live, { sandboxes: (d) => renderSandboxes(sandboxes, JSON.parse(d)) },
      document.getElementById("live-state"));
  }
});
