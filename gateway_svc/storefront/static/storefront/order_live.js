/*
 * The order page's live status: the gateway's push channel for this order
 * (Server-Sent Events, GET /api/orders/{id}/events/, authorised by the session
 * cookie), and polling of the status fragment while that channel is down.
 *
 * The page renders <section id="order-status" data-order-id data-status
 * data-status-url> (storefront/_order_status.html). On each event the section is
 * replaced by a fresh copy of the fragment, so the page shows exactly what a
 * reload would (words, history, refusal) without the script knowing the HTML.
 * EventSource reconnects by itself and sends Last-Event-ID, so a dropped stream
 * resumes where it stopped; the first connection says where the page stands
 * with ?after= (the number of events the page lists). The stream ends with the
 * event that settles the order; the gateway answers 204 when there is nothing
 * left to send, which EventSource takes as "stop".
 *
 * Without this script (or without EventSource) the fragment polls itself with
 * htmx; with it, htmx's polling is cancelled and this script polls only while
 * the channel is down.
 */
(function () {
  "use strict";

  var SETTLED = ["REJECTED", "CANCELLED"];
  var FINAL = ["APPROVED", "REJECTED", "CANCELLED"];
  var POLL_MS = 3000;
  var RECONNECT_MS = 15000;

  var section = document.getElementById("order-status");
  if (!section || !window.fetch || !window.EventSource) {
    return; // htmx's polling of the fragment goes on as the page set it up
  }
  var orderId = section.getAttribute("data-order-id");
  var statusUrl = section.getAttribute("data-status-url");
  if (!orderId || !statusUrl) {
    return;
  }
  var streamUrl = "/api/orders/" + encodeURIComponent(orderId) + "/events/";

  var source = null;
  var pollTimer = null;
  var reconnectTimer = null;
  var fetching = false;
  var fetchAgain = false;
  var finished = false;

  // This script keeps the section up to date: htmx's own polling would double it.
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (event.target && event.target.id === "order-status") {
      event.preventDefault();
    }
  });

  function currentStatus() {
    return section.getAttribute("data-status") || "";
  }

  function eventsShown() {
    return section.querySelectorAll(".history li").length;
  }

  function refresh() {
    if (fetching) {
      fetchAgain = true; // a burst of events: one more fetch once this one is in
      return;
    }
    fetching = true;
    fetch(statusUrl, { credentials: "same-origin", headers: { "HX-Request": "true" } })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("status fragment: " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.firstElementChild;
        if (fresh && fresh.id === "order-status") {
          section.replaceWith(fresh);
          section = fresh;
        }
        if (!source && FINAL.indexOf(currentStatus()) !== -1) {
          finish(); // polling found the end
        }
      })
      .catch(function () {
        /* the next event or poll tries again */
      })
      .then(function () {
        fetching = false;
        if (fetchAgain) {
          fetchAgain = false;
          refresh();
        }
      });
  }

  function startPolling() {
    if (!pollTimer && !finished) {
      pollTimer = window.setInterval(refresh, POLL_MS);
    }
  }

  function stopPolling() {
    if (pollTimer) {
      window.clearInterval(pollTimer);
      pollTimer = null;
    }
  }

  function finish() {
    finished = true;
    stopPolling();
    if (reconnectTimer) {
      window.clearTimeout(reconnectTimer);
      reconnectTimer = null;
    }
    if (source) {
      source.close();
      source = null;
    }
  }

  function connect() {
    reconnectTimer = null;
    source = new EventSource(streamUrl + "?after=" + eventsShown());
    source.onopen = stopPolling;
    source.onmessage = function (message) {
      var event;
      try {
        event = JSON.parse(message.data);
      } catch (error) {
        return;
      }
      refresh();
      if (event.final) {
        finish();
      }
    };
    source.onerror = function () {
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (204: nothing left; or 401, 404, 5xx): read the fragment once to
        // know which, poll if the order is still under way, try the channel later.
        source = null;
        refresh();
        if (!finished) {
          startPolling();
          reconnectTimer = window.setTimeout(connect, RECONNECT_MS);
        }
      } else {
        startPolling(); // EventSource reconnects by itself; poll meanwhile
      }
    };
  }

  if (SETTLED.indexOf(currentStatus()) === -1) {
    connect(); // an APPROVED order too: a cancellation may be on its way
  }
})();
