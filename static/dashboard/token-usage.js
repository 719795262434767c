// The token panel: the plugin generator's counts for this user, fetched once the page has
// painted, updated at once by a finished generation and fetched afresh after it and on
// Refresh Data.
//
// Everything the service sends is put on the page as text (textContent, Chart.js labels),
// never as HTML. The panel's data-state says which of its states is showing: loading,
// ready, stale, no-usage, not-configured, unreachable or error.
"use strict";

(function () {
  const panel = document.querySelector("[data-token-usage]");
  if (!panel || panel.dataset.state === "not-configured") return;

  const {
    SERVER_PROBLEMS, capitalised, count, formatCount, notConfigured, onColourSchemeChange,
    palette, problemOf, stackedBarOptions, tokensOf, upstreamProblem,
  } = window.UsageSite; // common.js
  const zone = panel.closest("[data-dashboard]").dataset.zone;
  const own = panel.dataset.own === "true";
  const DAYS = Number(panel.dataset.days);
  const MONTHS = Number(panel.dataset.months);
  const TIMEOUT_MS = 30000;
  const message = panel.querySelector("[data-token-message]");
  const status = panel.querySelector("[data-token-status]");
  const body = panel.querySelector("[data-token-body]");

  let usage = null; // the analytics on screen, as the API sent them, or null
  let charts = null;
  let newest = 0; // the number of the latest fetch: answers to older ones are dropped

  // ---- times, in the page's zone ----

  function inZone(date, options) {
    return window.UsageSite.inZone(zone, date, options);
  }

  function dayOf(date) {
    return inZone(date, { year: "numeric", month: "2-digit", day: "2-digit" });
  }

  // "14:02", with the day in front when it is not today.
  function shortTime(date) {
    const time = inZone(date, { hour: "2-digit", minute: "2-digit" });
    return dayOf(date) === dayOf(new Date()) ? time : `${inZone(date, { day: "numeric", month: "short" })}, ${time}`;
  }

  function parsedTime(text) {
    const date = text ? new Date(text) : null;
    return date && !Number.isNaN(date.getTime()) ? date : null;
  }

  // ---- the periods the charts and tables show: UTC days and months, as the service counts ----

  function utcDays(end) {
    return Array.from({ length: DAYS }, (_, index) => {
      const day = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth(), end.getUTCDate() - (DAYS - 1 - index)));
      return day.toISOString().slice(0, 10);
    });
  }

  function utcMonths(end) {
    return Array.from({ length: MONTHS }, (_, index) => {
      const month = new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth() - (MONTHS - 1 - index), 1));
      return month.toISOString().slice(0, 7);
    });
  }

  // Days and months in the reader's locale, as the rest of the page (common.js).
  function dayLabel(key, withYear) {
    return window.UsageSite.periodLabel(key, "day", withYear);
  }

  function monthLabel(key) {
    return window.UsageSite.periodLabel(`${key}-01`, "month", false);
  }

  // One row per period, zero where the service has nothing; entries of one period are added.
  function rows(entries, keyName, keys) {
    const byKey = new Map(keys.map((key) => [key, { key, prompt: 0, completion: 0, total: 0, requests: 0 }]));
    for (const entry of Array.isArray(entries) ? entries : []) {
      const row = entry && byKey.get(String(entry[keyName]));
      if (!row) continue;
      row.prompt += count(entry.promptTokens);
      row.completion += count(entry.completionTokens);
      row.total += count(entry.totalTokens);
      row.requests += count(entry.requestCount);
    }
    return [...byKey.values()];
  }

  function periods(data) {
    const now = new Date();
    const days = rows(data.dailyUsage, "date", utcDays(now));
    const spansYears = days[0].key.slice(0, 4) !== days[days.length - 1].key.slice(0, 4);
    days.forEach((row) => { row.label = dayLabel(row.key, spansYears); });
    const months = rows(data.monthlyUsage, "month", utcMonths(now));
    months.forEach((row) => { row.label = monthLabel(row.key); });
    return { days, months };
  }

  // ---- drawing ----

  function fillTable(period, periodRows) {
    const tbody = panel.querySelector(`[data-token-table=${period}] tbody`);
    tbody.replaceChildren(...periodRows.map((row) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = row.label;
      tr.append(th);
      for (const value of [row.prompt, row.completion, row.total, row.requests]) {
        const td = document.createElement("td");
        td.className = "number";
        td.textContent = formatCount(value);
        tr.append(td);
      }
      return tr;
    }));
  }

  function datasets(periodRows, colours) {
    const bar = { borderRadius: 2, maxBarThickness: 40 };
    return [
      { ...bar, label: "Prompt", data: periodRows.map((row) => row.prompt), backgroundColor: colours.prompt },
      { ...bar, label: "Completion", data: periodRows.map((row) => row.completion), backgroundColor: colours.completion },
    ];
  }

  function barChart(canvas, periodRows, colours) {
    return new Chart(canvas, {
      type: "bar",
      data: { labels: periodRows.map((row) => row.label), datasets: datasets(periodRows, colours) },
      options: stackedBarOptions(colours, "Tokens"),
    });
  }

  function drawCharts(shown) {
    if (typeof Chart === "undefined") return; // the tables, open, hold the same numbers
    const colours = palette(panel);
    if (!charts) {
      panel.querySelectorAll("[data-token-chart-frame]").forEach((frame) => { frame.hidden = false; });
      panel.querySelectorAll("[data-token-details]").forEach((details) => { details.open = false; });
      charts = {
        daily: barChart(panel.querySelector("[data-token-chart=daily]"), shown.days, colours),
        monthly: barChart(panel.querySelector("[data-token-chart=monthly]"), shown.months, colours),
      };
      return;
    }
    for (const [chart, periodRows] of [[charts.daily, shown.days], [charts.monthly, shown.months]]) {
      chart.data.labels = periodRows.map((row) => row.label);
      chart.data.datasets = datasets(periodRows, colours);
      chart.update();
    }
  }

  function showFigures(data) {
    // Each figure names the field of the API's answer it shows.
    panel.querySelectorAll("[data-token-figure]").forEach((figure) => {
      figure.textContent = formatCount(data[figure.dataset.tokenFigure]);
    });
    const last = parsedTime(data.lastRequestAt);
    const cell = panel.querySelector("[data-token-last-request]");
    if (last) {
      const time = document.createElement("time");
      time.dateTime = last.toISOString();
      time.textContent = inZone(last, { day: "numeric", month: "short", year: "numeric", hour: "2-digit", minute: "2-digit" });
      cell.replaceChildren(time);
    } else {
      cell.textContent = "—";
    }
  }

  function render(data) {
    usage = data;
    body.hidden = false;
    showFigures(data);
    const shown = periods(data);
    fillTable("daily", shown.days);
    fillTable("monthly", shown.months);
    drawCharts(shown);
  }

  function show(state, text) {
    panel.dataset.state = state;
    message.textContent = text || "";
    message.hidden = !text;
    message.classList.toggle("error", state === "error" || state === "unreachable");
    message.classList.toggle("warning", state === "stale");
  }

  function clear() {
    usage = null;
    body.hidden = true;
  }

  // ---- the states, from the API's answer ----

  function showData(data) {
    const fetched = parsedTime(data.fetchedAt);
    if (data.stale) {
      render(data);
      const problem = upstreamProblem(data.staleReason) || upstreamProblem("upstream_error");
      show("stale", `Showing data from ${fetched ? shortTime(fetched) : "earlier"}; ${problem}.`);
      status.textContent = "";
    } else if (data.noUsageYet || (count(data.requestCount) === 0 && count(data.totalTokens) === 0)) {
      showNoUsage();
    } else {
      render(data);
      show("ready", "");
      status.textContent = `Updated ${inZone(fetched || new Date(), { hour: "2-digit", minute: "2-digit", second: "2-digit" })}`;
    }
  }

  function showNoUsage() {
    clear();
    show("no-usage", own
      ? "No token usage yet. Generate a plugin below and its tokens show here."
      : "No token usage yet for this user.");
    status.textContent = "";
  }

  function showUpstreamProblem(code) {
    const problem = upstreamProblem(code) || upstreamProblem("upstream_error");
    status.textContent = "";
    if (usage) {
      // The numbers on screen stay, marked with when they were fetched.
      const fetched = parsedTime(usage.fetchedAt);
      show("stale", `Showing data from ${fetched ? shortTime(fetched) : "earlier"}; ${problem}.`);
      return;
    }
    show("unreachable", `${capitalised(problem)}. Press Refresh Data to try again.`);
  }

  function showError(reason) {
    status.textContent = "";
    if (usage) {
      show("error", `Could not refresh token usage: ${reason} The numbers shown are from before.`);
    } else {
      show("error", `Could not load token usage: ${reason}`);
    }
  }

  function showNotConfigured() {
    clear();
    show("not-configured", notConfigured("Token usage"));
    status.textContent = "";
  }

  async function answerOf(response) {
    if (response.ok) {
      try {
        return { data: await response.json() };
      } catch (ignored) {
        return { code: "", reason: "The server's answer could not be read." };
      }
    }
    const problem = await problemOf(response);
    return { code: problem.code, reason: response.status === 401 ? SERVER_PROBLEMS.sessionEnded : problem.message };
  }

  async function load(refresh) {
    const number = ++newest;
    panel.setAttribute("aria-busy", "true");
    if (panel.dataset.state === "loading") show("loading", "Loading token usage…");
    else status.textContent = "Refreshing…";
    const url = new URL(panel.dataset.url, window.location.href);
    if (refresh) url.searchParams.set("refresh", "1");
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
    let answer;
    try {
      const response = await fetch(url, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      answer = response.redirected
        ? { code: "", reason: SERVER_PROBLEMS.sessionEnded }
        : await answerOf(response);
    } catch (error) {
      answer = { code: "", reason: error.name === "AbortError" ? SERVER_PROBLEMS.timeout : SERVER_PROBLEMS.unreachable };
    } finally {
      clearTimeout(timer);
    }
    if (number !== newest) return; // a newer fetch has been sent; its answer decides
    panel.removeAttribute("aria-busy");
    if (answer.data) showData(answer.data);
    else if (answer.code === "not_configured") showNotConfigured();
    else if (upstreamProblem(answer.code)) showUpstreamProblem(answer.code);
    else showError(answer.reason);
  }

  // ---- a finished generation: add its tokens at once, then ask the service ----

  function withTokens(entries, keyName, key, tokens) {
    const list = Array.isArray(entries) ? entries.map((entry) => ({ ...entry })) : [];
    let entry = list.find((item) => item && String(item[keyName]) === key);
    if (!entry) {
      entry = { [keyName]: key, promptTokens: 0, completionTokens: 0, totalTokens: 0, requestCount: 0 };
      list.push(entry);
    }
    entry.promptTokens = count(entry.promptTokens) + tokens.prompt;
    entry.completionTokens = count(entry.completionTokens) + tokens.completion;
    entry.totalTokens = count(entry.totalTokens) + tokens.total;
    entry.requestCount = count(entry.requestCount) + 1;
    return list;
  }

  function addGeneration(tokenUsage) {
    const base = usage || (panel.dataset.state === "no-usage" ? { dailyUsage: [], monthlyUsage: [] } : null);
    if (!base || !tokenUsage) return;
    const tokens = tokensOf(tokenUsage);
    const now = new Date();
    const day = now.toISOString().slice(0, 10);
    render({
      ...base,
      totalTokens: count(base.totalTokens) + tokens.total,
      promptTokens: count(base.promptTokens) + tokens.prompt,
      completionTokens: count(base.completionTokens) + tokens.completion,
      requestCount: count(base.requestCount) + 1,
      lastRequestAt: now.toISOString(),
      dailyUsage: withTokens(base.dailyUsage, "date", day, tokens),
      monthlyUsage: withTokens(base.monthlyUsage, "month", day.slice(0, 7), tokens),
    });
    if (panel.dataset.state === "no-usage") show("ready", "");
  }

  window.addEventListener("token-usage-updated", (event) => {
    addGeneration(event.detail && event.detail.tokenUsage);
    load(true);
  });
  // Refresh Data asks every panel for fresh numbers through this event.
  document.addEventListener("usage:refresh", () => load(true));

  onColourSchemeChange(() => {
    if (!charts) return;
    charts.daily.destroy();
    charts.monthly.destroy();
    charts = null;
    if (usage) drawCharts(periods(usage));
  });

  load(false);
})();
