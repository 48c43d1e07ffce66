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

  async function send(body, shown) {
    add("user", shown);
    typing.hidden = false;
    body.user_id = userId();
    body.language = (navigator.language || "en").slice(0, 2);
    try {
      const response = await fetch("/webchat/api/message", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      const data = await response.json();
      if (!response.ok) throw new Error(data.message || response.statusText);
      document.documentElement.lang = data.language;
      document.documentElement.dir = data.direction;
      for (const reply of data.replies) add("bot", reply.text, reply.buttons);
    } catch (error) {
      add("bot", "⚠ " + error.message);
    } finally {
      typing.hidden = true;
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
