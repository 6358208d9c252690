/*
 * Draw the LLM charts below the table of Locust's "LLM" tab.
 *
 * Locust's React UI shows a tab from template_args as a table only, so this
 * script, added to the index page by locust_llm_sse.metrics._web, appends a
 * panel to the container of the tab bar and the table while the URL query is
 * ?tab=llm. React leaves nodes it did not create in place, but it drops
 * them with their parent, so the panel is checked after every DOM change of
 * the React root. Locust changes the tab with history.pushState, which fires
 * no event, but the tab bar re-renders and so triggers the observer.
 */
(function () {
  "use strict";

  var TAB_KEY = "llm";
  // This script is served from <base>/llm/static/llm-tab.js.
  var llmBase = new URL("..", document.currentScript.src).href;
  var panel = null;
  var handle = null;

  function loadStyle() {
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = llmBase + "static/llm.css";
    document.head.appendChild(link);
  }

  function loadCharts(onLoad) {
    var script = document.createElement("script");
    script.src = llmBase + "static/llm-charts.js";
    script.onload = onLoad;
    document.head.appendChild(script);
  }

  /* Return the element that contains Locust's tab bar and tab content, or null when no tabs are shown. */
  function tabContainer() {
    var tabList = document.querySelector('#root [role="tablist"]');
    if (!tabList) {
      return null;
    }
    // Locust 2.x wraps the tab bar and the tab content in a MUI Container.
    return tabList.closest(".MuiContainer-root") || tabList.parentElement.parentElement;
  }

  function tabIsOpen() {
    return new URLSearchParams(window.location.search).get("tab") === TAB_KEY;
  }

  function openPanel(container) {
    panel = document.createElement("section");
    panel.id = "llm-tab-charts";
    panel.className = "llm-tab-panel";

    var header = document.createElement("div");
    header.className = "llm-tab-panel-header";
    var title = document.createElement("h2");
    title.textContent = "LLM charts";
    var link = document.createElement("a");
    link.href = llmBase;
    link.target = "_blank";
    link.rel = "noopener";
    link.textContent = "Open in a new window";
    header.appendChild(title);
    header.appendChild(link);
    panel.appendChild(header);

    var charts = document.createElement("div");
    panel.appendChild(charts);
    container.appendChild(panel);
    handle = window.LocustLlmCharts.mount(charts, { historyUrl: llmBase + "history.json" });
  }

  function closePanel() {
    handle.stop();
    panel.remove();
    panel = null;
    handle = null;
  }

  function update() {
    var container = tabIsOpen() ? tabContainer() : null;
    if (panel && (!container || panel.parentElement !== container || panel !== container.lastElementChild)) {
      closePanel();
    }
    if (container && !panel) {
      openPanel(container);
    }
  }

  var updateScheduled = false;
  function scheduleUpdate() {
    if (!updateScheduled) {
      updateScheduled = true;
      window.requestAnimationFrame(function () {
        updateScheduled = false;
        update();
      });
    }
  }

  loadStyle();
  loadCharts(function () {
    var root = document.getElementById("root") || document.body;
    new MutationObserver(scheduleUpdate).observe(root, { childList: true, subtree: true });
    window.addEventListener("popstate", scheduleUpdate);
    update();
  });
})();
