// Crossroads counsellors' console. All text from people is inserted with textContent (never as
// HTML); every message has dir="auto", so Arabic, Persian and Tigrinya render in their direction.
// Live updates: a long poll on /console/api/updates; a change reloads the queue and the open case.
(function () {
  "use strict";
  const $ = (id) => document.getElementById(id);
  let csrf = null;
  let me = null;
  let current = null; // open case id
  let cursor = "";

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }

  async function api(path, body) {
    const options = { credentials: "same-origin", headers: {} };
    if (body !== undefined) {
      options.method = "POST";
      options.headers["Content-Type"] = "application/json";
      if (csrf) options.headers["X-CSRF-Token"] = csrf;
      options.body = JSON.stringify(body);
    }
    const response = await fetch("/console/api/" + path, options);
    const data = await response.json().catch(() => ({}));
    if (response.status === 401 && path !== "login") {
      showLogin();
      throw new Error("Please log in again.");
    }
    if (!response.ok) throw new Error(data.message || response.statusText);
    return data;
  }

  function showLogin() {
    $("login").hidden = false;
    $("app").hidden = true;
    $("logout").hidden = true;
    $("who").textContent = "";
  }

  function minutes(seconds) {
    if (seconds < 60) return seconds + " s";
    if (seconds < 3600) return Math.floor(seconds / 60) + " min";
    return Math.floor(seconds / 3600) + " h " + Math.floor((seconds % 3600) / 60) + " min";
  }

  async function loadQueue() {
    const data = await api("queue");
    const list = $("queue");
    list.replaceChildren();
    $("queue-count").textContent = "(" + data.cases.length + ")";
    for (const c of data.cases) {
      const item = el("li");
      item.dataset.caseId = c.id;
      if (c.id === current) item.classList.add("selected");
      const button = el("button");
      button.type = "button";
      button.append(el("span", c.priority, "priority " + c.priority), " ");
      button.append(el("strong", "#" + c.id), " ");
      button.append(el("span", c.reason), " · ", el("span", c.language || "?"), " · ");
      button.append(el("span", c.status + (c.assignee ? " (" + c.assignee + ")" : "")), " · ");
      button.append(el("span", "waiting " + minutes(c.waiting_seconds)));
      button.addEventListener("click", () => openCase(c.id));
      item.appendChild(button);
      list.appendChild(item);
    }
    if (me && (me.role === "supervisor" || me.role === "admin")) loadStats();
  }

  async function loadStats() {
    const s = await api("stats");
    $("stats").hidden = false;
    const list = $("stats-list");
    list.replaceChildren();
    const rows = [["Waiting", s.queue_length], ["Urgent waiting", s.urgent_waiting], ["Open cases", s.open_cases],
      ["Handled (24 h)", s.cases_handled], ["Median wait (min)", s.median_wait_minutes === null ? "–" : s.median_wait_minutes]];
    for (const [k, v] of rows) list.append(el("dt", k), el("dd", v));
    const body = $("stats-languages").tBodies[0];
    body.replaceChildren();
    for (const [lang, b] of Object.entries(s.per_language)) {
      const tr = el("tr");
      for (const v of [lang, b.waiting, b.assigned, b.snoozed, b.handled, b.longest_wait_minutes]) tr.appendChild(el("td", v));
      body.appendChild(tr);
    }
  }

  const LABELS = { language: "Language", reason: "Reason", country_of_stay: "Country of stay",
    country_of_origin: "Country of origin", situation: "Situation", children: "Children",
    vulnerabilities: "Vulnerabilities", deadlines: "Deadlines mentioned", eligibility: "Eligibility result",
    topics: "Asked about" };

  function cardValue(key, value) {
    if (Array.isArray(value)) {
      if (key === "eligibility") return value.map((e) => e.programme + ": " + e.outcome).join("; ");
      return value.join(", ");
    }
    return value;
  }

  async function openCase(id) {
    current = id;
    $("case-error").textContent = "";
    let data;
    try {
      data = await api("cases/" + id);
    } catch (error) {
      $("case-error").textContent = error.message;
      return;
    }
    $("case-pane").hidden = false;
    const c = data.case;
    $("case-title").textContent = "#" + c.id + " · " + c.priority + " · " + c.status +
      (c.assignee ? " · " + c.assignee : "") + " · " + (data.channel || "");
    const mine = me && c.assignee === me.username;
    $("claim").hidden = !(c.status === "waiting" || (c.status === "snoozed" && !c.assignee));
    $("resolve").hidden = !mine && !(me.role === "supervisor" || me.role === "admin");
    $("reply-form").hidden = !(mine && c.status === "assigned");

    const card = $("card");
    card.replaceChildren();
    for (const [key, label] of Object.entries(LABELS)) {
      const value = cardValue(key, data.card[key]);
      if (value === undefined || value === null || value === "") continue;
      const dd = el("dd", value);
      dd.dir = "auto";
      card.append(el("dt", label), dd);
    }
    card.append(el("dt", "Consent"), el("dd", data.consent || "–"));

    const transcript = $("transcript");
    const atBottom = transcript.scrollTop + transcript.clientHeight >= transcript.scrollHeight - 20;
    transcript.replaceChildren();
    for (const m of data.transcript) {
      const item = el("li", null, m.direction + " " + m.sender + (m.misunderstood ? " misunderstood" : ""));
      item.dataset.messageId = m.id;
      item.lang = c.language || "";
      const who = m.direction === "in" ? "person" : (m.sender === "counsellor" ? "counsellor " + (m.author || "") : "assistant");
      item.appendChild(el("span", who + " · " + new Date(m.at).toLocaleTimeString() + (m.state === "pending" ? " · sending" : ""), "meta"));
      const text = el("span", m.text || "[" + m.kind + ": not readable here]", "text");
      text.dir = "auto";
      item.appendChild(text);
      if (m.direction === "in") {
        const mark = el("button", m.misunderstood ? "✓ marked misunderstood" : "the assistant misunderstood this", "mark");
        mark.type = "button";
        mark.addEventListener("click", () => act("messages/" + m.id + "/misunderstood", { value: !m.misunderstood }));
        item.appendChild(mark);
      }
      transcript.appendChild(item);
    }
    if (atBottom) transcript.scrollTop = transcript.scrollHeight;

    const notes = $("notes");
    notes.replaceChildren();
    for (const n of data.notes) {
      const item = el("li", (n.author || "?") + ": " + n.text);
      item.dir = "auto";
      notes.appendChild(item);
    }
    const canned = $("canned");
    if (canned.dataset.language !== (c.language || "en")) {
      canned.dataset.language = c.language || "en";
      const replies = await api("canned?language=" + encodeURIComponent(c.language || "en"));
      canned.replaceChildren(el("option", "Canned reply…"));
      canned.firstChild.value = "";
      for (const r of replies.replies) {
        const option = el("option", r.title + (r.language !== replies.language ? " (" + r.language + ")" : ""));
        option.value = r.text;
        canned.appendChild(option);
      }
    }
    for (const li of $("queue").children) li.classList.toggle("selected", Number(li.dataset.caseId) === id);
  }

  // -- the maintainers' review queue ---------------------------------------------------------------
  const REVIEWERS = ["maintainer", "supervisor", "admin"];

  async function loadReview() {
    const language = $("review-language").value;
    const data = await api("review" + (language ? "?language=" + encodeURIComponent(language) : ""));
    const body = $("review").querySelector("tbody");
    body.replaceChildren();
    $("review-count").textContent = "(" + data.items.length + ")";
    const languages = $("review-language");
    for (const item of data.items) {
      if (![...languages.options].some((o) => o.value === item.language)) {
        const option = el("option", item.language);
        option.value = item.language;
        languages.appendChild(option);
      }
      const row = el("tr");
      row.dataset.itemId = item.id;
      row.appendChild(el("td", item.language));
      const text = el("td", item.text, "text");
      text.dir = "auto";
      row.appendChild(text);
      row.appendChild(el("td", "×" + item.count + (item.source === "misunderstood" ? " (marked)" : "")));
      row.appendChild(el("td", (item.predicted || "?") + (item.confidence !== null ? " " + item.confidence + "%" : "")));
      const choice = el("select");
      choice.setAttribute("aria-label", "Right intent");
      for (const intent of data.intents) {
        const option = el("option", intent);
        option.value = intent;
        if (intent === item.predicted) option.selected = true;
        choice.appendChild(option);
      }
      const cell = el("td");
      cell.appendChild(choice);
      row.appendChild(cell);
      const save = el("button", "Save");
      save.type = "button";
      save.addEventListener("click", async () => {
        $("review-error").textContent = "";
        try {
          await api("review/" + item.id, { label: choice.value });
          row.remove();
          $("review-count").textContent = "(" + $("review").querySelectorAll("tbody tr").length + ")";
        } catch (error) {
          $("review-error").textContent = error.message;
        }
      });
      const actions = el("td");
      actions.appendChild(save);
      row.appendChild(actions);
      body.appendChild(row);
    }
  }

  async function act(path, body) {
    $("case-error").textContent = "";
    try {
      await api(path, body);
    } catch (error) {
      $("case-error").textContent = error.message;
    }
    await refresh();
  }

  async function refresh() {
    try {
      await loadQueue();
      if (current !== null) await openCase(current);
    } catch (error) { /* shown where it happened */ }
  }

  async function live() {
    // One request waits on the server until something changes (or 20 s pass).
    for (;;) {
      if ($("app").hidden) return;
      try {
        const data = await api("updates?cursor=" + encodeURIComponent(cursor));
        if (data.cursor !== cursor) {
          cursor = data.cursor;
          await refresh();
        }
      } catch (error) {
        await new Promise((resolve) => setTimeout(resolve, 2000));
      }
    }
  }

  async function start(data) {
    me = data.me;
    csrf = data.csrf;
    $("who").textContent = me.display_name + " (" + me.role + ")";
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
    const reviewer = REVIEWERS.includes(me.role);
    $("review-pane").hidden = !reviewer;
    if (reviewer) await loadReview().catch((error) => { $("review-error").textContent = error.message; });
    if (me.role === "maintainer") {  // maintainers review; they do not read cases
      $("queue-pane").hidden = true;
      return;
    }
    const people = await api("counsellors");
    const transfer = $("transfer");
    transfer.replaceChildren(el("option", "Transfer to…"));
    transfer.firstChild.value = "";
    for (const p of people.counsellors) {
      if (p.username === me.username) continue;
      const option = el("option", p.display_name + " (" + p.languages.join(", ") + ")");
      option.value = p.username;
      transfer.appendChild(option);
    }
    await refresh();
    live();
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("login-error").textContent = "";
    try {
      const data = await api("login", { username: $("username").value, password: $("password").value });
      $("password").value = "";
      await start(data);
    } catch (error) {
      $("login-error").textContent = error.message;
    }
  });
  $("logout").addEventListener("click", async () => {
    await api("logout", {}).catch(() => {});
    csrf = null;
    current = null;
    showLogin();
  });
  $("review-language").addEventListener("change", () => loadReview().catch(() => {}));
  $("claim").addEventListener("click", () => act("cases/" + current + "/claim", {}));
  $("resolve").addEventListener("click", () => act("cases/" + current + "/resolve", {}));
  $("snooze").addEventListener("change", (event) => {
    const value = Number(event.target.value);
    event.target.value = "";
    if (value) act("cases/" + current + "/snooze", { minutes: value });
  });
  $("transfer").addEventListener("change", (event) => {
    const to = event.target.value;
    event.target.value = "";
    if (to) act("cases/" + current + "/transfer", { to: to });
  });
  $("canned").addEventListener("change", (event) => {
    if (event.target.value) $("reply").value = event.target.value;
    event.target.value = "";
  });
  $("reply-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("reply").value;
    if (!text.trim()) return;
    $("reply").value = "";
    await act("cases/" + current + "/reply", { text: text });
  });
  $("note-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = $("note").value;
    if (!text.trim()) return;
    $("note").value = "";
    await act("cases/" + current + "/notes", { text: text });
  });

  api("me").then(start).catch(showLogin);
})();
