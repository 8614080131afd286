/*
 * The dashboard's behaviour, on top of agentqueue.js:
 *  - live: the page's SSE stream (body[data-stream]) says something changed; the page is then
 *    fetched again and its [data-live] parts swapped in. One rendering (the server's
 *    templates), no polling: a fetch happens only after an event, at most one at a time.
 *  - buttons [data-post] call the API (cancel, retry, pause, resume) and show its answer;
 *  - forms [data-token] complete a token with JSON data;
 *  - the job list's charts (#charts) are refreshed once a minute too, so their time axis moves.
 * The API key (if any) is the HttpOnly cookie, sent by the browser; this script never sees it.
 */
(function () {
  "use strict";

  var body = document.body;
  var client = AgentQueue({ baseUrl: body.dataset.base || "" });
  var notice = document.getElementById("notice");
  var liveState = document.getElementById("live-state");
  var MIN_GAP_MS = 250; // a burst of events costs one fetch per quarter second at most

  function show(message, isError) {
    notice.textContent = message;
    notice.classList.toggle("error", Boolean(isError));
    notice.hidden = false;
  }

  function setLive(state) {
    if (liveState) {
      liveState.dataset.state = state;
      liveState.textContent = state;
    }
  }

  // -- live parts ---------------------------------------------------------------------------
  var fetching = false;
  var wanted = false;
  var lastFetch = 0;

  function refresh() {
    wanted = true;
    if (!fetching) {
      schedule();
    }
  }

  function schedule() {
    fetching = true;
    setTimeout(fetchParts, Math.max(0, lastFetch + MIN_GAP_MS - Date.now()));
  }

  async function fetchParts() {
    wanted = false;
    lastFetch = Date.now();
    try {
      var response = await fetch(location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
      });
      if (response.redirected && new URL(response.url).pathname.endsWith("/login")) {
        location.assign(response.url); // the key was revoked: sign in again
        return;
      }
      if (response.ok) {
        swap(new DOMParser().parseFromString(await response.text(), "text/html"));
      }
    } catch (error) {
      setLive("reconnecting"); // the server is away; the stream's reconnect brings us back
    }
    if (wanted) {
      schedule(); // events came during the fetch
    } else {
      fetching = false;
    }
  }

  function swap(fresh) {
    document.querySelectorAll("[data-live]").forEach(function (part) {
      var next = part.id && fresh.getElementById(part.id);
      if (!next) {
        return;
      }
      if (busy(part)) {
        return; // someone is typing there: the next change brings it up to date
      }
      part.replaceWith(document.importNode(next, true));
    });
  }

  // A part where someone is typing is left alone.
  function busy(part) {
    var active = document.activeElement;
    if (active && part.contains(active) && active.matches("textarea, input, select")) {
      return true;
    }
    return Array.prototype.some.call(part.querySelectorAll("textarea"), function (area) {
      return area.value !== area.defaultValue;
    });
  }

  // -- the page's stream -----------------------------------------------------------------------
  var following = null;

  function follow() {
    var path = body.dataset.stream;
    if (!path || following) {
      return;
    }
    var ofJob = body.dataset.follow === "job";
    var last = null;
    following = client.stream(path, {
      onOpen: function () {
        setLive("live");
        refresh(); // what changed between rendering and (re)connecting
      },
      onMessage: function (message) {
        if (message.event === "snapshot") {
          last = JSON.parse(message.data);
        }
        setLive("live");
        refresh();
      },
      onError: function (error, willRetry) {
        setLive(willRetry ? "reconnecting" : "stopped");
        if (!willRetry) {
          following = null;
          show("Live updates stopped: " + error.message, true);
        }
      },
      // A job's stream ends once the job has finished; other streams never end on purpose.
      shouldResume: function () {
        return !(ofJob && last && AgentQueue.TERMINAL.indexOf(last.status) >= 0);
      },
      onEnd: function () {
        following = null;
        setLive("finished");
        refresh();
      },
    });
  }

  // -- actions ---------------------------------------------------------------------------------
  document.addEventListener("click", async function (click) {
    var button = click.target.closest("button[data-post]");
    if (!button) {
      return;
    }
    click.preventDefault();
    if (button.dataset.confirm && !window.confirm(button.dataset.confirm)) {
      return;
    }
    button.disabled = true;
    try {
      await client.request("POST", button.dataset.post);
      show(button.dataset.done || "Done.");
    } catch (error) {
      show(failure(error), true);
    } finally {
      button.disabled = false;
      refresh();
      follow(); // a retried job runs again: follow it again
    }
  });

  document.addEventListener("submit", async function (submit) {
    var form = submit.target.closest("form[data-token]");
    if (!form) {
      return;
    }
    submit.preventDefault();
    var area = form.querySelector("textarea");
    var data;
    try {
      data = area.value.trim() === "" ? null : JSON.parse(area.value);
    } catch (error) {
      show("The data is not valid JSON: " + error.message, true);
      return;
    }
    var button = form.querySelector("button");
    button.disabled = true;
    try {
      await client.completeToken(form.dataset.token, data);
      area.value = area.defaultValue; // done typing: let the live refresh replace the form
      show("Completed token " + form.dataset.token + ".");
    } catch (error) {
      show(failure(error), true);
    } finally {
      button.disabled = false;
      refresh();
    }
  });

  function failure(error) {
    if (error.status === 403) {
      return "Not allowed: " + error.message;
    }
    if (error.status === 401) {
      return "Sign in again: " + error.message;
    }
    return error.message || String(error);
  }

  // The charts' time axis moves each minute even when no job event arrives to refresh them:
  // one fetch a minute, only on a page that has charts.
  var CHART_TICK_MS = 60000;
  if (document.getElementById("charts")) {
    setInterval(refresh, CHART_TICK_MS);
  }

  follow();
})();
