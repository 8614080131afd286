/*
 * agentqueue.js: a dependency-free browser client for the agentqueue REST API.
 *
 *   <script src="https://jobs.example.com/static/agentqueue.js"></script>
 *   const queue = AgentQueue({ baseUrl: "https://jobs.example.com", apiKey: "aq_..." });
 *   const { id } = await queue.addJob("send_email", { to: "a@x.io" }, { priority: 5 });
 *   const follow = queue.followJob(id, { onProgress: (p, message) => ..., onDone: (job) => ... });
 *   follow.close();
 *
 * Streams are read with fetch, not EventSource: EventSource cannot send an Authorization
 * header. After a drop the stream is opened again with Last-Event-ID, so the server resumes
 * right after the last event received. Loaded by a <script> tag it defines `AgentQueue`; under
 * CommonJS or a bundler it is the module's export. Docs: docs/guides/dashboard.md.
 */
(function (root, factory) {
  "use strict";
  if (typeof module === "object" && module.exports) {
    module.exports = factory();
  } else {
    root.AgentQueue = factory();
  }
})(typeof self !== "undefined" ? self : this, function () {
  "use strict";

  var TERMINAL = ["completed", "failed", "cancelled"];
  // Answers that another try cannot change: stop instead of reconnecting forever.
  var FINAL_STATUSES = [400, 401, 403, 404, 405, 409, 413, 422];

  /** An error answer of the API: HTTP status, the stable `code` and the message to show. */
  class AgentQueueError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.name = "AgentQueueError";
      this.status = status;
      this.code = code;
      this.details = details || {};
    }
  }

  /**
   * A client of one agentqueue server.
   *   baseUrl: the server ("" or left out: this page's own origin)
   *   apiKey: sent as `Authorization: Bearer`; leave it out to rely on the dashboard's cookie
   *   fetch: a fetch function to use instead of the global one
   *   retryMinMs / retryMaxMs: the reconnect delay, doubled after each failed try (1 s .. 15 s)
   */
  function AgentQueue(options) {
    if (!(this instanceof AgentQueue)) {
      return new AgentQueue(options);
    }
    var settings = options || {};
    this.baseUrl = String(settings.baseUrl || "").replace(/\/+$/, "");
    this.retryMinMs = settings.retryMinMs || 1000;
    this.retryMaxMs = settings.retryMaxMs || 15000;
    var apiKey = settings.apiKey || null;
    var doFetch = settings.fetch || globalThis.fetch.bind(globalThis);
    // The key lives in this closure only, so logging or serializing the client cannot leak it.
    this._send = function (path, init) {
      var headers = Object.assign({ Accept: "application/json" }, init.headers || {});
      if (apiKey) {
        headers.Authorization = "Bearer " + apiKey;
      }
      return doFetch(
        this.baseUrl + path,
        Object.assign({}, init, { headers: headers, credentials: "same-origin" })
      );
    };
  }

  /** Call the API: `method` and `path` (e.g. "/api/v1/stats"), an optional JSON body. */
  AgentQueue.prototype.request = async function (method, path, body) {
    var init = { method: method, headers: {} };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    var response = await this._send(path, init);
    if (!response.ok) {
      throw await errorOf(response);
    }
    if (response.status === 204) {
      return null;
    }
    return response.json();
  };

  /** Enqueue a job; answers `{id, created, job}` (`created` false: an idempotency key hit). */
  AgentQueue.prototype.addJob = function (jobType, payload, options) {
    var body = Object.assign({}, options || {}, {
      job_type: jobType,
      payload: payload === undefined ? {} : payload,
    });
    return this.request("POST", "/api/v1/jobs", body);
  };

  /** The job with this id (an AgentQueueError with status 404 when there is none). */
  AgentQueue.prototype.getJob = function (id) {
    return this.request("GET", "/api/v1/jobs/" + encodeURIComponent(id));
  };

  /** Cancel a job (a running one is asked to stop); answers the job. */
  AgentQueue.prototype.cancelJob = function (id) {
    return this.request("POST", "/api/v1/jobs/" + encodeURIComponent(id) + "/cancel");
  };

  /** Run a failed or cancelled job again; answers the job. */
  AgentQueue.prototype.retryJob = function (id) {
    return this.request("POST", "/api/v1/jobs/" + encodeURIComponent(id) + "/retry");
  };

  /** Complete a pending token with `data`; the job waiting on it resumes with that data. */
  AgentQueue.prototype.completeToken = function (tokenId, data) {
    var path = "/api/v1/tokens/" + encodeURIComponent(tokenId) + "/complete";
    return this.request("POST", path, { data: data === undefined ? null : data });
  };

  /**
   * Follow one job live: a snapshot (the whole job) now and after each of its events.
   *   onSnapshot(job)                  every snapshot
   *   onEvent(event)                   every job event (claim, progress, complete ...)
   *   onProgress(percent, message, job) when progress or its message changed
   *   onDone(job)                      once, when the job completed, failed or was cancelled
   *   onError(error, willRetry)        a failed try; willRetry false means following stopped
   * Returns `{close()}`.
   */
  AgentQueue.prototype.followJob = function (id, handlers) {
    var on = handlers || {};
    var last = null;
    return this.stream("/api/v1/jobs/" + encodeURIComponent(id) + "/stream", {
      onMessage: function (message) {
        var data = JSON.parse(message.data);
        if (message.event !== "snapshot") {
          call(on.onEvent, data);
          return;
        }
        var before = last;
        last = data;
        call(on.onSnapshot, data);
        if (
          !before ||
          before.progress !== data.progress ||
          before.progress_message !== data.progress_message
        ) {
          call(on.onProgress, data.progress, data.progress_message, data);
        }
      },
      // The server ends the stream after the snapshot of a finished job; any other end is a
      // drop (a restart, a proxy), so the stream resumes.
      shouldResume: function () {
        return !(last && TERMINAL.indexOf(last.status) >= 0);
      },
      onEnd: function () {
        call(on.onDone, last);
      },
      onError: on.onError,
    });
  };

  /**
   * Read a Server-Sent Events stream of the API (e.g. "/api/v1/events?job_type=mail").
   *   onOpen()                  each time the stream is (re)opened
   *   onMessage({event, data, id})
   *   onError(error, willRetry)
   *   shouldResume()            asked when the server ends the stream: true (default) reopens
   *   onEnd()                   once, when the stream ended and was not resumed
   * Returns `{close()}`; after close() no handler is called again.
   */
  AgentQueue.prototype.stream = function (path, handlers) {
    var on = handlers || {};
    var client = this;
    var controller = null;
    var closed = false;
    var lastEventId = null;
    var delay = this.retryMinMs;
    var serverDelay = null;
    var timer = null;

    function retryLater(error) {
      if (closed) {
        return;
      }
      call(on.onError, error, true);
      var wait = serverDelay !== null ? Math.max(serverDelay, delay) : delay;
      delay = Math.min(delay * 2, client.retryMaxMs);
      timer = setTimeout(open, wait);
    }

    async function open() {
      timer = null;
      if (closed) {
        return;
      }
      controller = new AbortController();
      var headers = { Accept: "text/event-stream", "Cache-Control": "no-cache" };
      if (lastEventId !== null) {
        headers["Last-Event-ID"] = lastEventId;
      }
      var response;
      try {
        response = await client._send(path, { headers: headers, signal: controller.signal });
      } catch (error) {
        retryLater(error);
        return;
      }
      if (!response.ok) {
        var failure = await errorOf(response);
        if (FINAL_STATUSES.indexOf(response.status) >= 0) {
          closed = true;
          call(on.onError, failure, false);
        } else {
          retryLater(failure);
        }
        return;
      }
      call(on.onOpen);
      var parser = new EventParser(function (message) {
        delay = client.retryMinMs; // data arrived: the connection works again
        if (message.id !== null) {
          lastEventId = message.id;
        }
        if (!closed) {
          call(on.onMessage, message);
        }
      });
      try {
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        for (;;) {
          var chunk = await reader.read();
          if (chunk.done) {
            break;
          }
          parser.feed(decoder.decode(chunk.value, { stream: true }));
          if (parser.retry !== null) {
            serverDelay = parser.retry;
          }
        }
      } catch (error) {
        retryLater(error);
        return;
      }
      if (closed) {
        return;
      }
      if (on.shouldResume && !on.shouldResume()) {
        closed = true;
        call(on.onEnd);
        return;
      }
      retryLater(new AgentQueueError(0, "stream_ended", "the server ended the stream"));
    }

    open();
    return {
      close: function () {
        closed = true;
        if (timer !== null) {
          clearTimeout(timer);
        }
        if (controller !== null) {
          controller.abort();
        }
      },
    };
  };

  /** The SSE wire format (https://html.spec.whatwg.org/#event-stream-interpretation). */
  function EventParser(dispatch) {
    this.dispatch = dispatch;
    this.buffer = "";
    this.event = "";
    this.data = [];
    this.id = null;
    this.retry = null;
    this.afterCR = false;
  }

  EventParser.prototype.feed = function (text) {
    // A chunk may end between the "\r" and "\n" of one line break: skip that "\n".
    if (this.afterCR && text.charAt(0) === "\n") {
      text = text.slice(1);
    }
    this.afterCR = /\r$/.test(text);
    this.buffer += text;
    var lines = this.buffer.split(/\r\n|\r|\n/);
    this.buffer = lines.pop(); // the unfinished last line
    for (var i = 0; i < lines.length; i++) {
      this.line(lines[i]);
    }
  };

  EventParser.prototype.line = function (line) {
    if (line === "") {
      if (this.data.length) {
        this.dispatch({ event: this.event || "message", data: this.data.join("\n"), id: this.id });
      }
      this.event = "";
      this.data = [];
      return;
    }
    if (line[0] === ":") {
      return; // a comment: the server's keep-alive ping
    }
    var colon = line.indexOf(":");
    var field = colon < 0 ? line : line.slice(0, colon);
    var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") {
      this.event = value;
    } else if (field === "data") {
      this.data.push(value);
    } else if (field === "id" && value.indexOf("\0") < 0) {
      this.id = value;
    } else if (field === "retry" && /^\d+$/.test(value)) {
      this.retry = Number(value);
    }
  };

  async function errorOf(response) {
    var body = null;
    try {
      body = await response.json();
    } catch (ignored) {
      body = null; // not JSON (a proxy's error page): the status line says enough
    }
    var error = (body && body.error) || {};
    var message = error.message || "HTTP " + response.status + " " + response.statusText;
    return new AgentQueueError(response.status, error.code || "http_error", message, error);
  }

  // A handler's own exception must not break the stream: report it, carry on.
  function call(handler) {
    if (typeof handler !== "function") {
      return;
    }
    try {
      handler.apply(null, Array.prototype.slice.call(arguments, 1));
    } catch (error) {
      setTimeout(function () {
        throw error;
      });
    }
  }

  AgentQueue.AgentQueueError = AgentQueueError;
  AgentQueue.TERMINAL = TERMINAL.slice();
  return AgentQueue;
});
