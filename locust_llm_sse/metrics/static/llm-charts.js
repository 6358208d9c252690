/*
 * Line charts of locust-llm-sse's LLMStats.history, drawn as SVG without libraries.
 *
 * Each history entry is {time: epoch seconds, output_tokens_per_second,
 * requests_per_second, ttft_ms_p50, ttft_ms_p95, itl_ms_p50, itl_ms_p95}.
 * A null value leaves a gap in its line.
 *
 * window.LocustLlmCharts.render(container, history) draws the charts once.
 * window.LocustLlmCharts.mount(container, {historyUrl, intervalMs}) fetches
 * historyUrl every intervalMs (2000 by default) and redraws; it returns
 * {stop()}.
 */
(function () {
  "use strict";

  if (window.LocustLlmCharts) {
    return;
  }

  var SVG_NS = "http://www.w3.org/2000/svg";
  var DEFAULT_WIDTH = 900;
  var HEIGHT = 240;
  var MARGIN = { top: 12, right: 24, bottom: 28, left: 64 };
  var Y_TICKS = 4;
  var X_TICKS = 6;

  var CHARTS = [
    {
      id: "output-tokens-per-second",
      title: "Output tokens per second",
      unit: "tokens/s",
      lines: [{ key: "output_tokens_per_second", label: "Output tokens/s", color: "#00a84f" }],
    },
    {
      id: "ttft",
      title: "Time to first token (ms)",
      unit: "ms",
      lines: [
        { key: "ttft_ms_p50", label: "p50", color: "#ff9f00" },
        { key: "ttft_ms_p95", label: "p95", color: "#8a2be2" },
      ],
    },
    {
      id: "itl",
      title: "Inter-token latency (ms)",
      unit: "ms",
      lines: [
        { key: "itl_ms_p50", label: "p50", color: "#0099ff" },
        { key: "itl_ms_p95", label: "p95", color: "#e0457b" },
      ],
    },
    {
      id: "requests-per-second",
      title: "Requests per second",
      unit: "requests/s",
      lines: [{ key: "requests_per_second", label: "Requests/s", color: "#607d8b" }],
    },
  ];

  function svgElement(name, attributes, parent) {
    var element = document.createElementNS(SVG_NS, name);
    Object.keys(attributes || {}).forEach(function (key) {
      element.setAttribute(key, attributes[key]);
    });
    if (parent) {
      parent.appendChild(element);
    }
    return element;
  }

  function isNumber(value) {
    return typeof value === "number" && isFinite(value);
  }

  /* Round a maximum up to 1, 2 or 5 times a power of ten, so that tick labels are short. */
  function niceMaximum(value) {
    if (!(value > 0)) {
      return 1;
    }
    var power = Math.pow(10, Math.floor(Math.log10(value)));
    var steps = [1, 2, 5, 10];
    for (var i = 0; i < steps.length; i++) {
      if (value <= steps[i] * power) {
        return steps[i] * power;
      }
    }
    return 10 * power;
  }

  function formatNumber(value) {
    if (!isNumber(value)) {
      return "–";
    }
    var magnitude = Math.abs(value);
    if (magnitude >= 100) {
      return value.toFixed(0);
    }
    if (magnitude >= 10) {
      return value.toFixed(1);
    }
    return value.toFixed(2);
  }

  /* Return the fewest decimals (at most 6) that show a multiple of the tick step exactly. */
  function tickDecimals(step) {
    for (var decimals = 0; decimals < 6; decimals++) {
      var scaled = step * Math.pow(10, decimals);
      if (Math.abs(scaled - Math.round(scaled)) < 1e-9 * Math.max(1, scaled)) {
        return decimals;
      }
    }
    return 6;
  }

  function formatTime(epochSeconds) {
    return new Date(epochSeconds * 1000).toLocaleTimeString();
  }

  /* Split a line's points into runs without null values; each run becomes one polyline. */
  function lineSegments(history, key) {
    var segments = [];
    var current = [];
    history.forEach(function (entry) {
      var value = entry[key];
      if (isNumber(entry.time) && isNumber(value)) {
        current.push([entry.time, value]);
      } else if (current.length) {
        segments.push(current);
        current = [];
      }
    });
    if (current.length) {
      segments.push(current);
    }
    return segments;
  }

  function createFigure(chart) {
    var figure = document.createElement("figure");
    figure.className = "llm-chart";
    figure.setAttribute("data-chart", chart.id);
    var caption = document.createElement("figcaption");
    var title = document.createElement("span");
    title.className = "llm-chart-title";
    title.textContent = chart.title;
    var legend = document.createElement("span");
    legend.className = "llm-chart-legend";
    caption.appendChild(title);
    caption.appendChild(legend);
    figure.appendChild(caption);
    figure.appendChild(svgElement("svg", { role: "img", "aria-label": chart.title }));
    return figure;
  }

  function drawLegend(figure, chart, history) {
    var legend = figure.querySelector(".llm-chart-legend");
    legend.textContent = "";
    chart.lines.forEach(function (line) {
      var latest = null;
      for (var i = history.length - 1; i >= 0; i--) {
        if (isNumber(history[i][line.key])) {
          latest = history[i][line.key];
          break;
        }
      }
      var item = document.createElement("span");
      item.className = "llm-chart-legend-item";
      item.setAttribute("data-key", line.key);
      var swatch = document.createElement("span");
      swatch.className = "llm-chart-swatch";
      swatch.style.backgroundColor = line.color;
      item.appendChild(swatch);
      item.appendChild(document.createTextNode(line.label + ": " + formatNumber(latest)));
      legend.appendChild(item);
    });
  }

  function drawChart(figure, chart, history) {
    var svg = figure.querySelector("svg");
    var width = Math.max(figure.clientWidth || DEFAULT_WIDTH, 320);
    svg.setAttribute("viewBox", "0 0 " + width + " " + HEIGHT);
    svg.setAttribute("width", width);
    svg.setAttribute("height", HEIGHT);
    while (svg.firstChild) {
      svg.removeChild(svg.firstChild);
    }
    drawLegend(figure, chart, history);

    var plotWidth = width - MARGIN.left - MARGIN.right;
    var plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
    var segmentsByLine = chart.lines.map(function (line) {
      return lineSegments(history, line.key);
    });

    var times = [];
    var maxValue = 0;
    segmentsByLine.forEach(function (segments) {
      segments.forEach(function (segment) {
        segment.forEach(function (point) {
          times.push(point[0]);
          maxValue = Math.max(maxValue, point[1]);
        });
      });
    });
    figure.setAttribute("data-points", String(times.length));

    if (!times.length) {
      var empty = svgElement("text", { x: width / 2, y: HEIGHT / 2, "text-anchor": "middle", class: "llm-chart-empty" }, svg);
      empty.textContent = "No data yet";
      return;
    }

    var minTime = Math.min.apply(null, times);
    var maxTime = Math.max.apply(null, times);
    if (maxTime - minTime < 1) {
      minTime -= 1;
      maxTime += 1;
    }
    var yMax = niceMaximum(maxValue);
    function x(time) {
      return MARGIN.left + ((time - minTime) / (maxTime - minTime)) * plotWidth;
    }
    function y(value) {
      return MARGIN.top + plotHeight - (value / yMax) * plotHeight;
    }

    var grid = svgElement("g", { class: "llm-chart-grid" }, svg);
    var axis = svgElement("g", { class: "llm-chart-axis" }, svg);
    var decimals = tickDecimals(yMax / Y_TICKS);
    for (var i = 0; i <= Y_TICKS; i++) {
      var value = (yMax * i) / Y_TICKS;
      svgElement("line", { x1: MARGIN.left, x2: MARGIN.left + plotWidth, y1: y(value), y2: y(value) }, grid);
      var label = svgElement("text", { x: MARGIN.left - 6, y: y(value) + 4, "text-anchor": "end" }, axis);
      label.textContent = value.toFixed(decimals);
    }
    // Ticks are at least 1 s apart, so that no two labels show the same time.
    var xTicks = Math.max(2, Math.min(X_TICKS, Math.floor(plotWidth / 110), Math.floor(maxTime - minTime) + 1));
    for (var j = 0; j < xTicks; j++) {
      var time = minTime + ((maxTime - minTime) * j) / (xTicks - 1);
      var anchor = "middle";
      if (j === 0) {
        anchor = "start";
      } else if (j === xTicks - 1) {
        anchor = "end";
      }
      var timeLabel = svgElement("text", { x: x(time), y: HEIGHT - 8, "text-anchor": anchor }, axis);
      timeLabel.textContent = formatTime(time);
    }
    svgElement("line", { x1: MARGIN.left, x2: MARGIN.left + plotWidth, y1: y(0), y2: y(0), class: "llm-chart-baseline" }, axis);

    chart.lines.forEach(function (line, index) {
      var series = svgElement("g", { class: "llm-chart-series", "data-key": line.key }, svg);
      segmentsByLine[index].forEach(function (segment) {
        var points = segment
          .map(function (point) {
            return x(point[0]).toFixed(1) + "," + y(point[1]).toFixed(1);
          })
          .join(" ");
        if (segment.length === 1) {
          svgElement("circle", { cx: x(segment[0][0]), cy: y(segment[0][1]), r: 2.5, fill: line.color }, series);
        } else {
          svgElement("polyline", { points: points, fill: "none", stroke: line.color, "stroke-width": 2 }, series);
        }
      });
    });
  }

  function Charts(container) {
    this.container = container;
    this.history = [];
    this.figures = CHARTS.map(function (chart) {
      var figure = createFigure(chart);
      container.appendChild(figure);
      return figure;
    });
    container.classList.add("llm-charts");
    var self = this;
    var resizeTimer = null;
    this.onResize = function () {
      window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(function () {
        self.draw();
      }, 150);
    };
    window.addEventListener("resize", this.onResize);
  }

  Charts.prototype.draw = function () {
    var history = this.history;
    this.figures.forEach(function (figure, index) {
      drawChart(figure, CHARTS[index], history);
    });
  };

  /* Merge a /llm/history.json response: drop points older than its start (a reset or a trimmed history), then append. */
  Charts.prototype.merge = function (response) {
    var start = response.start;
    if (!isNumber(start)) {
      this.history = [];
    } else {
      this.history = this.history.filter(function (entry) {
        return entry.time >= start;
      });
    }
    this.history = this.history.concat(response.history || []);
  };

  Charts.prototype.lastTime = function () {
    return this.history.length ? this.history[this.history.length - 1].time : null;
  };

  Charts.prototype.destroy = function () {
    window.removeEventListener("resize", this.onResize);
    this.figures.forEach(function (figure) {
      figure.remove();
    });
  };

  function render(container, history) {
    var charts = new Charts(container);
    charts.history = history || [];
    charts.draw();
    return charts;
  }

  function mount(container, options) {
    var historyUrl = options.historyUrl;
    var intervalMs = options.intervalMs || 2000;
    var charts = render(container, []);
    var stopped = false;
    var timer = null;

    function poll() {
      var url = new URL(historyUrl, window.location.href);
      var since = charts.lastTime();
      if (since !== null) {
        url.searchParams.set("since", String(since));
      }
      fetch(url.href, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) {
            throw new Error("HTTP " + response.status + " from " + url.pathname);
          }
          return response.json();
        })
        .then(function (body) {
          if (!stopped) {
            charts.merge(body);
            charts.draw();
            container.removeAttribute("data-error");
          }
        })
        .catch(function (error) {
          container.setAttribute("data-error", String(error));
          console.warn("LLM charts: failed to fetch history:", error);
        })
        .then(function () {
          if (!stopped) {
            timer = window.setTimeout(poll, intervalMs);
          }
        });
    }

    poll();
    return {
      stop: function () {
        stopped = true;
        window.clearTimeout(timer);
        charts.destroy();
      },
    };
  }

  window.LocustLlmCharts = { render: render, mount: mount, charts: CHARTS };
})();
