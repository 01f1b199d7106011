// The alm chat page: talks to this server's OpenAI-compatible API and streams replies (server-sent events).
// The conversation lives in this page only. A base model (not fine-tuned for chat) gets completion mode:
// each message is a prompt the model continues.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { messages: [], chat: true, model: null, controller: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function notice(text) {
  $("notice").textContent = text || "";
  $("notice").hidden = !text;
}

function bubble(role, text) {
  const el = document.createElement("div");
  el.className = `message ${role}`;
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  el.append(body);
  $("log").append(el);
  el.scrollIntoView({ block: "end" });
  return el;
}

function finish(el, stateName, status) {
  el.dataset.state = stateName;
  if (status) {
    const s = document.createElement("span");
    s.className = "status";
    s.textContent = status;
    el.append(s);
  }
}

function busy(on) {
  $("send").disabled = on;
  $("stop").disabled = !on;
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body.error && body.error.message ? body.error.message : `HTTP ${response.status}`;
  } catch (e) {
    return `HTTP ${response.status}`;
  }
}

async function loadModel() {
  const response = await fetch("v1/models", { headers: headers() });
  if (response.status === 401) {
    $("key-field").hidden = false;
    notice("This server needs an API key: enter it in the panel, then send a message.");
    return false;
  }
  if (!response.ok) throw new Error(await errorText(response));
  const card = (await response.json()).data[0];
  state.model = card.id;
  state.chat = !(card.alm && card.alm.chat === false);
  const context = card.alm && card.alm.context ? `, context ${card.alm.context} tokens` : "";
  $("model").textContent = `${card.id}${context}`;
  notice(state.chat ? "" : "This is a base model (not fine-tuned for chat): each message is a prompt it continues.");
  return true;
}

function request(text) {
  const body = {
    stream: true,
    temperature: Number($("temperature").value),
    max_tokens: Math.max(1, parseInt($("max-tokens").value, 10) || 1),
  };
  if (state.model) body.model = state.model;
  if (!state.chat) return ["v1/completions", { ...body, prompt: text }];
  const system = $("system").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...state.messages] : [...state.messages];
  return ["v1/chat/completions", { ...body, messages }];
}

// Calls onEvent(parsed JSON) for every `data:` event of a server-sent event stream, until [DONE].
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        onEvent(JSON.parse(data));
      }
    }
  }
}

async function send(text) {
  if (state.model === null && !(await loadModel().catch((e) => (notice(e.message), false)))) return;
  bubble("user", text);
  if (state.chat) state.messages.push({ role: "user", content: text });
  const el = bubble("assistant", "");
  const out = el.querySelector(".text");
  el.dataset.state = "streaming";
  const controller = new AbortController();
  state.controller = controller;
  busy(true);
  let reply = "";
  let finishReason = null;
  try {
    const [url, body] = request(text);
    const response = await fetch(url, {
      method: "POST", headers: headers(), body: JSON.stringify(body), signal: controller.signal,
    });
    if (!response.ok) {
      if (response.status === 401) $("key-field").hidden = false;
      throw new Error(await errorText(response));
    }
    await readEvents(response, (event) => {
      if (event.error) throw new Error(event.error.message);
      const choice = event.choices && event.choices[0];
      if (!choice) return;
      const piece = state.chat ? choice.delta && choice.delta.content : choice.text;
      if (piece) {
        reply += piece;
        out.textContent = reply;
        el.scrollIntoView({ block: "end" });
      }
      if (choice.finish_reason) finishReason = choice.finish_reason;
    });
    finish(el, "done", finishReason === "length" ? "(stopped at the token limit)" : "");
  } catch (e) {
    if (controller.signal.aborted) {
      finish(el, "stopped", "(stopped)");
    } else {
      el.classList.add("error");
      finish(el, "error", e.message);
    }
  } finally {
    if (state.chat && reply) state.messages.push({ role: "assistant", content: reply });
    else if (state.chat && !reply) state.messages.pop(); // nothing came back: the turn is not kept
    state.controller = null;
    busy(false);
    $("input").focus();
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = $("temperature").value;
  });
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("input").value;
    if (!text.trim() || state.controller) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => state.controller && state.controller.abort());
  $("reset").addEventListener("click", () => {
    if (state.controller) state.controller.abort();
    state.messages = [];
    $("log").replaceChildren();
  });
  loadModel().catch((e) => notice(`Cannot reach the server: ${e.message}`));
  $("input").focus();
});
