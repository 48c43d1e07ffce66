// Crossroads web chat. Text is always inserted with textContent (never as HTML);
// direction is per message (dir="auto"), so Arabic and Persian render right to left.
(function () {
  "use strict";
  const log = document.getElementById("log");
  const form = document.getElementById("composer");
  const input = document.getElementById("text");
  const typing = document.getElementById("typing");
  const languages = document.getElementById("languages");

  function userId() {
    let id = localStorage.getItem("crossroads_user_id");
    if (!id) {
      const bytes = new Uint8Array(16);
      crypto.getRandomValues(bytes);
      id = Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
      localStorage.setItem("crossroads_user_id", id);
    }
    return id;
  }

  function add(kind, text, buttons) {
    const item = document.createElement("li");
    item.className = "msg " + kind;
    item.dir = "auto";
    item.textContent = text;
    if (buttons && buttons.length) {
      const row = document.createElement("div");
      row.className = "buttons";
      for (const b of buttons) {
        const button = document.createElement("button");
        button.type = "button";
        button.dir = "auto";
        button.textContent = b.title;
        button.addEventListener("click", () => send({ payload: b.payload }, b.title));
        row.appendChild(button);
      }
      item.appendChild(row);
    }
    log.appendChild(item);
    item.scrollIntoView({ block: "end" });
  }

  function randomId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function show(data) {
    document.documentElement.lang = data.language;
    document.documentElement.dir = data.direction;
    for (const reply of data.replies) add("bot", reply.text, reply.buttons);
  }

  // Replies can arrive later than the request that caused them: when the assistant was busy or
  // restarting, and whenever a counsellor writes. Ask every few seconds (each reply is handed out once).
  let polling = null;
  function startPolling() {
    if (polling) return;
    polling = setInterval(async () => {
      if (document.hidden) return;
      try {
        const response = await fetch("/webchat/api/messages?user_id=" + encodeURIComponent(userId()));
        const data = await response.json();
        if (response.ok && data.replies.length) {
          show(data);
          typing.hidden = true;
        }
      } catch (error) { /* offline for a moment: try again */ }
    }, 3000);
  }

  async function post(body) {
    // The same message_id on a retry: the server stores and answers the message once.
    for (let attempt = 0; ; attempt++) {
      try {
        return await fetch("/webchat/api/message", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        });
      } catch (error) {
        if (attempt >= 2) throw error;
        await new Promise((resolve) => setTimeout(resolve, 1500 * (attempt + 1)));
      }
    }
  }

  async function send(body, shown) {
    add("user", shown);
    typing.hidden = false;
    body.user_id = userId();
    body.message_id = randomId();
    body.language = (navigator.language || "en").slice(0, 2);
    let waiting = false;
    try {
      const response = await post(body);
      const data = await response.json();
      if (!response.ok) throw new Error(data.message || response.statusText);
      show(data);
      if (data.pending) waiting = true;
      startPolling();
    } catch (error) {
      add("bot", "⚠ " + error.message);
    } finally {
      typing.hidden = !waiting;
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (!text.trim()) return;
    input.value = "";
    send({ text: text }, text);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  if (localStorage.getItem("crossroads_user_id")) startPolling();

  fetch("/webchat/config").then((r) => r.json()).then((config) => {
    input.maxLength = config.max_chars;
    // "Choose your language" in every language, each in its own direction.
    const prompts = document.createElement("ul");
    prompts.className = "prompts";
    for (const l of config.languages) {
      if (!l.prompt) continue;
      const item = document.createElement("li");
      item.lang = l.code;
      item.dir = l.direction;
      item.textContent = l.prompt;
      prompts.appendChild(item);
    }
    languages.appendChild(prompts);
    for (const l of config.languages) {
      const button = document.createElement("button");
      button.type = "button";
      button.lang = l.code;
      button.dir = l.direction;
      button.textContent = l.name;
      button.addEventListener("click", () =>
        send({ payload: '/change_language{"language":"' + l.code + '"}' }, l.name));
      languages.appendChild(button);
    }
  });
})();
