// The plugin form: sends the prompt as JSON to /api/plugin/generate, shows the answer and
// the tokens it used, then tells the token panel with a 'token-usage-updated' event.
//
// The result comes from the plugin generator, which this site does not own: it is shown
// as text (textContent in a <pre>), never as HTML.
"use strict";

(function () {
  const form = document.querySelector("[data-generate-form]");
  if (!form || form.dataset.enabled !== "true") return;

  const {
    SERVER_PROBLEMS, capitalised, formatCount, notConfigured, problemOf, tokensOf, upstreamProblem,
  } = window.UsageSite; // common.js
  const section = form.closest("[data-generate-plugin]");
  const prompt = form.querySelector("textarea[name=prompt]");
  const button = form.querySelector("[data-generate-button]");
  const status = section.querySelector("[data-generate-status]");
  const problem = section.querySelector("[data-generate-error]");
  const result = section.querySelector("[data-generate-result]");
  const output = section.querySelector("[data-generate-output]");
  const name = section.querySelector("[data-generate-name]");
  const description = section.querySelector("[data-generate-description]");
  // Longer than the server's own limit on a generation, which answers 504 first.
  const TIMEOUT_MS = 180000;

  prompt.disabled = false;
  button.disabled = false;

  // Retry-After is whole seconds or an HTTP date.
  function waitOf(response) {
    const header = response.headers.get("Retry-After");
    if (!header) return "a moment";
    let seconds = Number(header);
    if (!Number.isFinite(seconds)) seconds = (Date.parse(header) - Date.now()) / 1000;
    return Number.isFinite(seconds) ? `${Math.max(1, Math.ceil(seconds))} s` : "a moment";
  }

  async function generationProblem(response) {
    const { code, said, message } = await problemOf(response);
    if (response.status === 429) return `Too many generations in a short time: try again in ${waitOf(response)}.`;
    if (code === "busy") return `${capitalised(upstreamProblem(code))}: try again in ${waitOf(response)}.`;
    if (code === "not_configured") return notConfigured("Plugin generation");
    if (code === "empty_prompt") return "Describe the plugin first: the prompt is empty.";
    if (upstreamProblem(code)) return `${capitalised(upstreamProblem(code))}. Try again later.`;
    if (code === "rejected_by_upstream") return `The plugin generator refused the request: ${said || `status ${response.status}`}`;
    if (response.status === 401 || (response.status === 403 && !code)) {
      return "Your session has ended or the page is out of date. Reload the page and try again.";
    }
    return message;
  }

  function showResult(payload) {
    const tokens = tokensOf(payload.tokenUsage || {});
    // Each count names its part of the tokens: total, prompt or completion.
    section.querySelectorAll("[data-generate-tokens]").forEach((figure) => {
      figure.textContent = formatCount(tokens[figure.dataset.generateTokens]);
    });
    // A plugin usually comes as {name, description, language, code}; anything else is
    // shown whole, as JSON.
    const plugin = payload.result && typeof payload.result === "object" ? payload.result : {};
    const text = (value) => (typeof value === "string" ? value : "");
    const summary = [text(plugin.name), text(plugin.language)].filter(Boolean).join(" · ");
    name.textContent = summary;
    name.hidden = !summary;
    description.textContent = text(plugin.description);
    description.hidden = !description.textContent;
    output.textContent = text(plugin.code) || (typeof payload.result === "string"
      ? payload.result : JSON.stringify(payload.result, null, 2));
    result.hidden = false;
  }

  function setBusy(busy) {
    button.disabled = busy;
    prompt.readOnly = busy;
    if (busy) button.setAttribute("aria-busy", "true");
    else button.removeAttribute("aria-busy");
  }

  async function generate() {
    setBusy(true);
    status.textContent = "Generating…";
    problem.hidden = true;
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    try {
      const response = await fetch(form.dataset.url, {
        method: "POST",
        headers: {
          Accept: "application/json",
          "Content-Type": "application/json",
          "X-CSRFToken": form.querySelector("[name=csrfmiddlewaretoken]").value,
        },
        body: JSON.stringify({ prompt: prompt.value }),
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (!response.ok) throw new Error(await generationProblem(response));
      const payload = await response.json();
      showResult(payload);
      status.textContent = "Done.";
      window.dispatchEvent(new CustomEvent("token-usage-updated", { detail: { tokenUsage: payload.tokenUsage } }));
    } catch (error) {
      problem.textContent = error.name === "AbortError"
        ? `${SERVER_PROBLEMS.timeout} Try again later.`
        : error instanceof TypeError ? `${SERVER_PROBLEMS.unreachable} Try again later.` : error.message;
      problem.hidden = false;
      status.textContent = "";
    } finally {
      clearTimeout(timer);
      setBusy(false);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!button.disabled) generate();
  });
})();
