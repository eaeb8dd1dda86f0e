/* tio.js: the Tracktor tracking library. The collector serves it at /scripts/<sid>.js with
 * the app's settings filled in; the seed's snippet loads it and queues calls until it runs.
 *
 * - The current person's id lives in localStorage (cookies when localStorage is unavailable);
 *   a new visitor gets an anonymous id, "a-" and 23 base62 characters.
 * - Calls go out in batches (POST /batch) every second or every 50 calls. Calls not yet
 *   acknowledged are kept in localStorage, retried with exponential backoff (1 s to 30 s)
 *   while the collector is unreachable or answers 5xx, and sent again after a reload. Each
 *   call carries its own event_id, so a retry of a batch the collector already took is
 *   collapsed downstream instead of counted twice.
 * - A batch the collector refuses (4xx) is retried one call at a time, so only the bad call
 *   is dropped (with a console warning naming the reason).
 * - Auto events from the app's settings: page views whose URL matches a regular expression,
 *   clicks on elements matching a CSS selector.
 */
(function (window, document, config) {
  "use strict";
  var queued = window.tio;
  if (queued && queued.__tracktor) return; // loaded twice
  var PREFIX = "tio:" + config.sid + ":";
  var MAX_BATCH = 50, FLUSH_MS = 1000, MIN_BACKOFF_MS = 1000, MAX_BACKOFF_MS = 30000, MAX_PENDING = 5000;
  var TIMEOUT_MS = 15000; // a request without an answer by then counts as failed
  var BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

  var store = (function () {
    try {
      var ls = window.localStorage, probe = PREFIX + "probe";
      ls.setItem(probe, "1");
      ls.removeItem(probe);
      return {
        persistent: true,
        get: function (k) { return ls.getItem(PREFIX + k); },
        set: function (k, v) { if (v == null) ls.removeItem(PREFIX + k); else ls.setItem(PREFIX + k, v); }
      };
    } catch (e) {
      return { // cookies hold the identity only: the pending calls would not fit
        persistent: false,
        get: function (k) {
          var m = document.cookie.match(new RegExp("(?:^|; )" + encodeURIComponent(PREFIX + k).replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "=([^;]*)"));
          return m ? decodeURIComponent(m[1]) : null;
        },
        set: function (k, v) {
          var name = encodeURIComponent(PREFIX + k);
          document.cookie = v == null ? name + "=; path=/; max-age=0; SameSite=Lax"
            : name + "=" + encodeURIComponent(v) + "; path=/; max-age=63072000; SameSite=Lax";
        }
      };
    }
  })();

  function randomChars(n) {
    var out = "", bytes = new Uint8Array(1);
    while (out.length < n) {
      window.crypto.getRandomValues(bytes);
      if (bytes[0] < 248) out += BASE62[bytes[0] % 62]; // 248 = 4 * 62: no bias
    }
    return out;
  }

  function isAnonymous(id) { return /^a-[0-9A-Za-z]{23}$/.test(id); }

  var person = { id: store.get("id"), sign: store.get("sign") };
  if (!person.id) {
    person.id = "a-" + randomChars(23);
    store.set("id", person.id);
  }

  var pending = [];
  try { pending = JSON.parse(store.get("pending") || "[]"); } catch (e) { pending = []; }
  var inFlight = false, backoff = 0, oneByOne = 0, timer = null;

  function save() { if (store.persistent) store.set("pending", pending.length ? JSON.stringify(pending) : null); }

  function enqueue(call) {
    call.sid = config.sid;
    call.ts = Date.now();
    call.event_id = "c" + randomChars(23);
    if (call.id === undefined) call.id = person.id;
    if (call.sign === undefined && person.sign) call.sign = person.sign;
    if (pending.length >= MAX_PENDING) pending.shift(); // a browser offline for very long keeps the newest
    pending.push(call);
    save();
    schedule(pending.length >= MAX_BATCH ? 0 : FLUSH_MS);
  }

  function schedule(ms) {
    if (timer !== null || inFlight) return;
    timer = window.setTimeout(function () { timer = null; flush(false); }, ms);
  }

  function retryLater() {
    backoff = Math.min(backoff ? backoff * 2 : MIN_BACKOFF_MS, MAX_BACKOFF_MS);
    schedule(backoff * (0.75 + Math.random() / 2));
  }

  function flush(leaving) {
    if (inFlight || !pending.length) return;
    var batch = pending.slice(0, oneByOne ? 1 : MAX_BATCH), body = JSON.stringify(batch);
    inFlight = true;
    var done = function (ok, status, reason) {
      inFlight = false;
      if (ok || (status >= 400 && status < 500 && status !== 408 && status !== 429 && batch.length === 1)) {
        if (!ok && window.console) window.console.warn("tracktor: call dropped (" + status + "): " + reason, batch[0]);
        pending.splice(0, batch.length);
        save();
        backoff = 0;
        if (oneByOne) oneByOne--;
        if (pending.length) schedule(0);
      } else if (status >= 400 && status < 500 && status !== 408 && status !== 429) {
        oneByOne = batch.length; // find the bad call: send these one at a time
        schedule(0);
      } else {
        retryLater();
      }
    };
    var abort = window.AbortController ? new window.AbortController() : null;
    var watchdog = abort && window.setTimeout(function () { abort.abort(); }, TIMEOUT_MS);
    var finish = done;
    done = function (ok, status, reason) { if (watchdog) window.clearTimeout(watchdog); finish(ok, status, reason); };
    try {
      window.fetch(config.endpoint + "/batch", {
        method: "POST", body: body, headers: { "Content-Type": "application/json" },
        keepalive: leaving && body.length < 60000, credentials: "omit", mode: "cors",
        signal: abort ? abort.signal : undefined
      }).then(function (resp) {
        return resp.text().then(function (text) {
          var reason = text;
          try { reason = JSON.parse(text).error || text; } catch (e) { /* not JSON */ }
          done(resp.ok, resp.status, reason);
        });
      }, function () { done(false, 0, "network"); });
    } catch (e) {
      done(false, 0, String(e));
    }
  }

  var api = {
    __tracktor: true,
    identify: function (id, sign) {
      if (id === undefined || id === null || id === "") return;
      id = String(id);
      var previous = person.id;
      if (id === previous && (sign || null) === person.sign) return;
      person.id = id;
      person.sign = sign || null;
      store.set("id", id);
      store.set("sign", person.sign);
      var call = { method: "identify", id: id };
      if (sign) call.sign = sign;
      if (isAnonymous(previous) && previous !== id) call.previous_id = previous; // merge; else a switch
      enqueue(call);
    },
    track: function (name, args) { enqueue({ method: "track", action: String(name), data: args || {} }); },
    setProperties: function (props) { enqueue({ method: "set", data: props || {} }); },
    setCart: function (cart) { enqueue({ method: "setCart", data: cart || {} }); },
    cancelCart: function (cart) { enqueue({ method: "cancelCart", data: cart || {} }); },
    purchaseCart: function (cart) { enqueue({ method: "purchaseCart", data: cart || {} }); },
    setMessengerConfig: function () { /* the messenger widget is not part of this library */ },
    flush: function () { flush(false); },
    personId: function () { return person.id; }
  };

  // -- auto events ------------------------------------------------------------------------
  var auto = config.autoEvents || {};
  var lastPage = null;
  function pageView() {
    if (location.href === lastPage) return;
    lastPage = location.href;
    (auto.pageViews || []).forEach(function (rule) {
      if (new RegExp(rule.url).test(location.href)) {
        api.track(rule.event, { url: location.href, path: location.pathname, title: document.title, referrer: document.referrer });
      }
    });
  }
  if ((auto.clicks || []).length) {
    document.addEventListener("click", function (e) {
      auto.clicks.forEach(function (rule) {
        var el = e.target && e.target.closest ? e.target.closest(rule.selector) : null;
        if (el) api.track(rule.event, { selector: rule.selector, text: (el.textContent || "").trim().slice(0, 100), url: location.href });
      });
    }, true);
  }
  if ((auto.pageViews || []).length && window.history && history.pushState) {
    var push = history.pushState;
    history.pushState = function () { var r = push.apply(this, arguments); pageView(); return r; };
    window.addEventListener("popstate", pageView);
  }

  window.addEventListener("pagehide", function () { flush(true); });
  document.addEventListener("visibilitychange", function () { if (document.visibilityState === "hidden") flush(true); });

  // Calls made before the library loaded, in their order; then the real object takes over.
  window.tio = window.YS = api;
  if (queued && queued.length) {
    for (var i = 0; i < queued.length; i++) {
      var item = queued[i];
      if (item && typeof api[item[0]] === "function") api[item[0]].apply(api, Array.prototype.slice.call(item, 1));
    }
  }
  pageView();
  if (pending.length) schedule(0);
})(window, document, /*CONFIG*/);
