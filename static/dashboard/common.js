// What the dashboard's page scripts share, on one global, window.UsageSite: numbers from the
// API, the wordings of what went wrong (upstream and on the way), the site's JSON error
// from a failed answer, times in the page's zone, dates in the reader's locale, and the
// charts' colours and look.
//
// A plain deferred script, loaded before the page scripts that use it: no build step, and
// nothing the Content-Security-Policy (scripts from this site only) would stop.
"use strict";

window.UsageSite = (function () {
  // ---- numbers ----

  const integers = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  // A count from the API as a whole number: anything missing, negative or not a number is 0.
  function count(value) {
    const number = Number(value);
    return Number.isFinite(number) && number > 0 ? Math.round(number) : 0;
  }

  function formatCount(value) {
    return integers.format(count(value));
  }

  // A generation's tokens ({promptTokens, completionTokens, totalTokens}); without a total,
  // the total is the two parts added.
  function tokensOf(tokenUsage) {
    const prompt = count(tokenUsage.promptTokens);
    const completion = count(tokenUsage.completionTokens);
    return { prompt, completion, total: count(tokenUsage.totalTokens) || prompt + completion };
  }

  // ---- what went wrong ----

  // What went wrong upstream, by the API's error code, as the end of a sentence.
  const UPSTREAM_PROBLEMS = {
    upstream_unreachable: "the plugin generator is unreachable",
    upstream_timeout: "the plugin generator did not answer in time",
    upstream_error: "the plugin generator answered with an error",
    busy: "the plugin generator is busy",
  };

  // The wording for `code`, or "" when it is not one of the upstream's problems.
  function upstreamProblem(code) {
    return Object.hasOwn(UPSTREAM_PROBLEMS, code) ? UPSTREAM_PROBLEMS[code] : "";
  }

  function capitalised(text) {
    return text ? `${text[0].toUpperCase()}${text.slice(1)}` : text;
  }

  // "Plugin generation", "Token usage": what the page cannot offer without the service.
  function notConfigured(feature) {
    return `${feature} is not available: this site has no plugin generator configured.`;
  }

  // What went wrong between the page and this site, before any answer.
  const SERVER_PROBLEMS = Object.freeze({
    timeout: "The server did not answer in time.",
    unreachable: "The server could not be reached.",
    sessionEnded: "Your session has ended. Reload the page to log in again.",
  });

  // The site's JSON error ({"error": "...", "code": "..."}) from a failed answer: its code
  // ("" without one), what the server said ("" when nothing), and a message to show, which
  // is what it said or else its status.
  async function problemOf(response) {
    let body = null;
    try {
      body = await response.json();
    } catch (ignored) { /* not JSON: the status says enough */ }
    const code = body && typeof body.code === "string" ? body.code : "";
    const said = body && typeof body.error === "string" ? body.error : "";
    return { code, said, message: said || `The server answered ${response.status}.` };
  }

  // ---- times ----

  // A time in the page's zone, in the reader's locale (as the dates below) with the
  // dashboard's 24-hour clock.
  function inZone(zone, date, options) {
    return new Intl.DateTimeFormat(LOCALE, { timeZone: zone, hourCycle: "h23", ...options }).format(date);
  }

  // "14:02:07": the time of an "Updated …" line.
  function clock(zone, date) {
    return inZone(zone, date, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  // ---- dates ----

  // The page writes its dates in the browser's own locale, the one Chromium and the others
  // also use for the date inputs' "11/04/2026": month first beside month first ("Nov 4,
  // 2026"), day first beside day first ("4 Nov 2026"), the month as a word either way. The
  // server writes "4 Nov 2026" for readers without JavaScript. Times keep the 24-hour clock.
  const LOCALE = undefined; // the runtime's default locale: the browser's

  function dayOf(iso) { // "2026-11-04" as a Date, formatted in UTC so the day never moves
    return new Date(`${iso.slice(0, 10)}T00:00:00Z`);
  }

  const DAY_FORMATS = {
    date: { dateStyle: "medium" },
    day: { day: "numeric", month: "short" },
    dayYear: { day: "numeric", month: "short", year: "numeric" },
    month: { month: "short", year: "numeric" },
  };

  function formatDay(iso, style) {
    return new Intl.DateTimeFormat(LOCALE, { timeZone: "UTC", ...DAY_FORMATS[style] }).format(dayOf(iso));
  }

  // A bucket's label, as the server's period_label: "Nov 4", "Week of Nov 4", "Nov 2026",
  // with the year when the buckets span more than one.
  function periodLabel(iso, granularity, withYear) {
    if (granularity === "month") return formatDay(iso, "month");
    const day = formatDay(iso, withYear ? "dayYear" : "day");
    return granularity === "week" ? `Week of ${day}` : day;
  }

  function spansYears(isoDays) {
    return isoDays.length > 0 && isoDays[0].slice(0, 4) !== isoDays[isoDays.length - 1].slice(0, 4);
  }

  // "Oct 1 – 30, 2026": two days as one range, shortened the locale's way.
  function dayRange(startIso, endIso) {
    const format = new Intl.DateTimeFormat(LOCALE, { timeZone: "UTC", ...DAY_FORMATS.dayYear });
    return format.formatRange(dayOf(startIso), dayOf(endIso));
  }

  // Every <time datetime> under an element with data-date-style (date, datetime, day, week,
  // month) written again in the reader's locale; instants in the page's zone.
  function localiseDates(root, zone) {
    root.querySelectorAll("[data-date-style]").forEach((container) => {
      const style = container.dataset.dateStyle;
      const times = [...container.querySelectorAll("time[datetime]")];
      const withYear = spansYears(times.map((time) => time.dateTime));
      for (const time of times) {
        if (style === "datetime") {
          time.textContent = new Intl.DateTimeFormat(LOCALE, {
            dateStyle: "medium", timeStyle: "short", hourCycle: "h23", timeZone: zone,
          }).format(new Date(time.dateTime));
        } else if (style === "date") {
          time.textContent = formatDay(time.dateTime, "date");
        } else {
          time.textContent = periodLabel(time.dateTime, style, withYear);
        }
      }
    });
    // The cards' comparisons: "12% more images than the 30 days before (Oct 1 – 30, 2026)".
    root.querySelectorAll(".change[data-words]").forEach((change) => {
      const words = `${change.dataset.words} (${dayRange(change.dataset.start, change.dataset.end)})`;
      change.title = words;
      const spoken = change.querySelector("[data-change-words]");
      if (spoken) spoken.textContent = words;
    });
  }

  // ---- charts ----

  const chartAnimation = window.matchMedia("(prefers-reduced-motion: reduce)").matches ? false : { duration: 250 };

  // The charts' colours come from the page's CSS (index.css, token-usage.css), so that they
  // follow light and dark with the tables. Custom properties inherit: `element` is the one
  // the chart sits in.
  function palette(element) {
    const style = getComputedStyle(element);
    const read = (name) => style.getPropertyValue(name).trim();
    return {
      models: Array.from({ length: 10 }, (_, index) => read(`--model-${index}`)),
      other: read("--model-other"),
      previous: read("--previous-period"),
      prompt: read("--token-prompt"),
      completion: read("--token-completion"),
      grid: read("--grid"),
      text: getComputedStyle(document.body).color,
      surface: getComputedStyle(document.documentElement).getPropertyValue("--surface").trim(),
    };
  }

  // Charts drawn with the old colours are drawn again when the system turns light or dark.
  function onColourSchemeChange(redraw) {
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", redraw);
  }

  // The look of the stacked bar charts: a legend below, one tooltip for the whole bar, and
  // whole numbers up the side under `title`.
  function stackedBarOptions(colours, title) {
    return {
      responsive: true,
      maintainAspectRatio: false,
      animation: chartAnimation,
      interaction: { mode: "index", intersect: false },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12, usePointStyle: true } } },
      scales: {
        x: { stacked: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 12 } },
        y: {
          stacked: true, beginAtZero: true, grid: { color: colours.grid },
          ticks: { precision: 0 }, title: { display: true, text: title },
        },
      },
    };
  }

  return Object.freeze({
    count, formatCount, tokensOf,
    upstreamProblem, capitalised, notConfigured, SERVER_PROBLEMS, problemOf,
    inZone, clock, periodLabel, spansYears, localiseDates,
    chartAnimation, palette, onColourSchemeChange, stackedBarOptions,
  });
})();
