// The dashboard's charts, its Refresh Data button, and the first-visit time zone.
//
// The server renders every number into the page; this script only draws the charts from
// the same data (the "chart-data" json_script) and, on refresh, puts freshly rendered
// regions in place. Without it, or without Chart.js, the tables still hold every number.
"use strict";

(function () {
  const page = document.querySelector("[data-dashboard]");
  if (!page) return;

  const {
    SERVER_PROBLEMS, chartAnimation, clock, localiseDates, onColourSchemeChange, palette,
    periodLabel, problemOf, spansYears, stackedBarOptions,
  } = window.UsageSite; // common.js
  const zone = page.dataset.zone;
  const refreshForm = page.querySelector("[data-refresh-form]");
  const refreshButton = page.querySelector("[data-refresh-button]");
  const refreshStatus = page.querySelector("[data-refresh-status]");
  const refreshError = page.querySelector("[data-refresh-error]");
  const usageCanvas = page.querySelector("[data-usage-chart]");
  const shareCanvas = page.querySelector("[data-share-chart]");
  const emptyNote = page.querySelector("[data-chart-empty]");
  const compareToggle = page.querySelector("[data-compare-toggle]");
  const REFRESH_TIMEOUT_MS = 15000;
  // On a phone the bar chart's legend would take a third of its height and more: it is left
  // out there, and the share table, with the same colours, is the legend.
  const narrow = window.matchMedia("(max-width: 600px)");
  let charts = null;

  // A series' colour: its palette place from the server (by model name), or the grey of
  // "Other models".
  function colourOf(slot, colours) {
    return slot === "other" ? colours.other : colours.models[slot];
  }

  function labelsOf(data) {
    const withYear = spansYears(data.periods);
    return data.periods.map((period) => periodLabel(period, data.granularity, withYear));
  }

  // In the cost view the server sends each value twice: a number to plot, and the exact
  // decimal string of the summary API ("text"), which is what a tooltip shows.
  function valueText(data, dataset, index) {
    if (data.measure !== "cost") return null;
    const text = dataset.text ? dataset.text[index] : undefined;
    return text === null ? "no price" : `${text} ${data.currency}`;
  }

  function barDatasets(data, colours) {
    const bars = data.datasets.map((dataset) => ({
      label: dataset.label,
      data: dataset.data,
      text: dataset.text,
      backgroundColor: colourOf(dataset.colour, colours),
      borderRadius: 2,
      maxBarThickness: 48,
      order: 1,
    }));
    if (!compareToggle.checked) return bars;
    // The days before, lined up day by day (or week by week) with the range: a line over
    // the bars, in its own stack, so that it is the period's total and not added on top.
    return [...bars, {
      type: "line",
      label: data.previous.label,
      data: data.previous.data,
      text: data.previous.text,
      stack: "previous",
      borderColor: colours.previous,
      backgroundColor: colours.previous,
      borderDash: [6, 4],
      borderWidth: 2,
      pointRadius: 0,
      pointHitRadius: 6,
      spanGaps: false,
      order: 0,
    }];
  }

  function shareDataset(data, colours) {
    return [{
      label: data.axis,
      data: data.share.data,
      text: data.share.text,
      backgroundColor: data.share.colours.map((slot) => colourOf(slot, colours)),
      borderColor: colours.surface,
      borderWidth: 2,
    }];
  }

  function barOptions(data, colours) {
    const options = stackedBarOptions(colours, data.axis);
    if (data.measure === "cost") options.scales.y.ticks.precision = undefined;
    const unpriced = (item) => item.raw === null && item.dataset.text?.[item.dataIndex] === null;
    const tooltip = {
      // A model with no images that day is left out of the bar's tooltip; one whose images
      // had no price says so.
      filter: (item) => item.raw > 0 || (item.dataset.stack === "previous" && item.raw !== null)
        || (item.dataset.stack !== "previous" && unpriced(item)),
      callbacks: {
        label: (item) => {
          const value = valueText(chartData, item.dataset, item.dataIndex) ?? item.formattedValue;
          if (item.dataset.stack !== "previous") return `${item.dataset.label}: ${value}`;
          const period = chartData.previous.periods[item.dataIndex];
          const when = period ? periodLabel(period, chartData.granularity, true) : "";
          return `${item.dataset.label}${when ? ` (${when})` : ""}: ${value}`;
        },
      },
    };
    options.plugins.tooltip = tooltip;
    if (narrow.matches) {
      options.plugins.legend.display = false;
      options.scales.y.title.display = false;
    }
    return options;
  }

  function drawCharts(data) {
    const colours = palette(page);
    Chart.defaults.color = colours.text;
    Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
    const bar = new Chart(usageCanvas, {
      type: "bar",
      data: { labels: labelsOf(data), datasets: barDatasets(data, colours) },
      options: barOptions(data, colours),
    });
    const share = new Chart(shareCanvas, {
      type: "doughnut",
      data: { labels: data.share.labels, datasets: shareDataset(data, colours) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: chartAnimation,
        cutout: "62%",
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              label: (item) => {
                const value = valueText(chartData, item.dataset, item.dataIndex) ?? item.formattedValue;
                return `${item.label}: ${value}`;
              },
            },
          },
        },
      },
    });
    return { bar, share };
  }

  function redrawCharts() {
    charts.bar.destroy();
    charts.share.destroy();
    charts = drawCharts(chartData);
  }

  function updateCharts(data) {
    showEmpty(data);
    if (!charts) return;
    const colours = palette(page);
    charts.bar.data.labels = labelsOf(data);
    charts.bar.data.datasets = barDatasets(data, colours);
    charts.bar.update();
    charts.share.data.labels = data.share.labels;
    charts.share.data.datasets = shareDataset(data, colours);
    charts.share.update();
    fitShareFrame(data);
  }

  function showCharts() {
    page.querySelectorAll("[data-chart-frame]").forEach((frame) => { frame.hidden = false; });
    // The table stays one click away under the chart; while charts are missing it stays open.
    page.querySelector("[data-usage-details]").open = false;
  }

  // An empty doughnut is a blank square; the share table already says there is nothing.
  function fitShareFrame(data) {
    const drawn = data.measure === "cost" ? data.share.data.some((cost) => cost > 0) : data.share.data.length > 0;
    shareCanvas.parentElement.hidden = !drawn;
  }

  // An empty range draws a bare grid with a 0 to 1 axis: a message goes over it.
  function showEmpty(data) {
    emptyNote.textContent = data.empty;
    emptyNote.hidden = data.share.data.some((value) => value > 0);
  }

  let chartData = JSON.parse(document.getElementById("chart-data").textContent);
  localiseDates(page, zone);
  if (typeof Chart !== "undefined") {
    showCharts();
    fitShareFrame(chartData);
    showEmpty(chartData);
    charts = drawCharts(chartData);
    onColourSchemeChange(redrawCharts);
    narrow.addEventListener("change", redrawCharts);
    compareToggle.addEventListener("change", () => updateCharts(chartData));
  } else {
    // JavaScript runs but Chart.js did not come (a blocked CDN, an extension): say so once,
    // quietly, above the tables that hold the same numbers.
    page.querySelector("[data-charts-missing]").hidden = false;
  }

  async function refresh() {
    refreshButton.disabled = true;
    refreshButton.setAttribute("aria-busy", "true");
    refreshStatus.textContent = "Refreshing…";
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), REFRESH_TIMEOUT_MS);
    try {
      const response = await fetch(page.dataset.dataUrl, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
        cache: "no-store",
        signal: controller.signal,
      });
      if (response.redirected) throw new Error(SERVER_PROBLEMS.sessionEnded);
      if (!response.ok) throw new Error(await refreshProblem(response));
      const payload = await response.json();
      for (const [region, html] of Object.entries(payload.html)) {
        // Rendered and escaped by the server's templates, like the first paint.
        const element = page.querySelector(`[data-region="${region}"]`);
        element.innerHTML = html;
        localiseDates(element, zone);
      }
      chartData = payload.chart;
      updateCharts(chartData);
      refreshError.hidden = true;
      refreshStatus.textContent = `Updated ${clock(zone, new Date())}`;
    } catch (error) {
      const reason = error.name === "AbortError" ? SERVER_PROBLEMS.timeout : error.message;
      refreshError.textContent = `Could not refresh the data: ${reason} The numbers shown are from before.`;
      refreshError.hidden = false;
      refreshStatus.textContent = "Refresh failed";
    } finally {
      clearTimeout(timer);
      refreshButton.disabled = false;
      refreshButton.removeAttribute("aria-busy");
    }
  }

  async function refreshProblem(response) {
    const problem = await problemOf(response);
    if (!problem.said && response.status === 503) {
      return "The database is briefly unavailable; try again in a few seconds.";
    }
    return problem.message;
  }

  // Refresh Data asks every panel for fresh numbers (this one, and the token panel in
  // token-usage.js) with one event, which other scripts can send too.
  refreshForm.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!refreshButton.disabled) document.dispatchEvent(new CustomEvent("usage:refresh"));
  });
  document.addEventListener("usage:refresh", () => { if (!refreshButton.disabled) refresh(); });

  // First visit: no zone saved and none in the URL, so the server showed UTC. Save the
  // browser's zone once and show the page again in it.
  if (page.dataset.detectZone === "true") {
    const browserZone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    const token = page.querySelector(".zone-form [name=csrfmiddlewaretoken]").value;
    if (browserZone) {
      fetch(page.dataset.zoneUrl, {
        method: "POST",
        headers: { Accept: "application/json", "X-CSRFToken": token },
        body: new URLSearchParams({ tz: browserZone }),
        credentials: "same-origin",
      }).then((response) => {
        if (response.ok && browserZone !== zone) window.location.reload();
      }).catch(() => { /* keep showing UTC; the zone form still works */ });
    }
  }
})();
