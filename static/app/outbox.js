/* The completion outbox, shared by the pages and the service worker.
 *
 * A completion is written to IndexedDB first and sent afterwards, so nothing recorded on
 * the phone is lost to a bad connection. Three paths flush the outbox: the page's
 * `online` event, every page load, and Background Sync in the worker. All of them run
 * under one Web Lock, so each queued item is POSTed by one of them at a time; the
 * server's client_id makes a retried POST answer with the row it already has.
 *
 * Item states: "pending" (waiting to be sent) and "failed" (the server refused it with a
 * 4xx other than 401/429: kept and shown, never dropped silently). An item is deleted
 * only after a 200 or 201.
 */
(function (scope) {
  'use strict';

  var DB_NAME = 'homework';
  var STORE = 'outbox';
  var LOCK = 'homework-outbox';
  var SYNC_TAG = 'homework-outbox';
  var CHANNEL = 'homework';
  var SEND_TIMEOUT_MS = 15000;
  var DB_TIMEOUT_MS = 5000;
  var ENDPOINT = '/api/me/completions';

  function withTimeout(promise, ms, what) {
    return new Promise(function (resolve, reject) {
      var timer = setTimeout(function () { reject(new Error(what + ' timed out')); }, ms);
      promise.then(
        function (value) { clearTimeout(timer); resolve(value); },
        function (error) { clearTimeout(timer); reject(error); }
      );
    });
  }

  var dbPromise = null;

  function openDb() {
    if (!dbPromise) {
      dbPromise = withTimeout(new Promise(function (resolve, reject) {
        var request = indexedDB.open(DB_NAME, 1);
        request.onupgradeneeded = function () {
          request.result.createObjectStore(STORE, { keyPath: 'client_id' });
        };
        request.onsuccess = function () {
          var db = request.result;
          // Another tab upgrading the schema: let it, and reopen next time.
          db.onversionchange = function () { db.close(); dbPromise = null; };
          resolve(db);
        };
        request.onerror = function () { reject(request.error); };
      }), DB_TIMEOUT_MS, 'opening IndexedDB');
      dbPromise.catch(function () { dbPromise = null; });
    }
    return dbPromise;
  }

  function run(mode, body) {
    return openDb().then(function (db) {
      return withTimeout(new Promise(function (resolve, reject) {
        var tx = db.transaction(STORE, mode);
        var store = tx.objectStore(STORE);
        var result;
        body(store, function (value) { result = value; });
        tx.oncomplete = function () { resolve(result); };
        tx.onerror = function () { reject(tx.error); };
        tx.onabort = function () { reject(tx.error || new Error('transaction aborted')); };
      }), DB_TIMEOUT_MS, 'IndexedDB transaction');
    });
  }

  function all() {
    return run('readonly', function (store, done) {
      var request = store.getAll();
      request.onsuccess = function () {
        done(request.result.sort(function (a, b) { return a.queued_at < b.queued_at ? -1 : 1; }));
      };
    });
  }

  function put(item) {
    return run('readwrite', function (store) { store.put(item); });
  }

  function remove(clientId) {
    return run('readwrite', function (store) { store['delete'](clientId); });
  }

  function uuid() {
    if (scope.crypto && typeof scope.crypto.randomUUID === 'function') return scope.crypto.randomUUID();
    var b = scope.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join('');
    return h.slice(0, 8) + '-' + h.slice(8, 12) + '-' + h.slice(12, 16) + '-' + h.slice(16, 20) + '-' + h.slice(20);
  }

  function announce(message) {
    if (typeof BroadcastChannel === 'undefined') return;
    try {
      var channel = new BroadcastChannel(CHANNEL);
      channel.postMessage(message);
      channel.close();
    } catch (e) { /* a closing page: nothing to tell */ }
  }

  /** Queue a completion body (it must carry client_id); `meta` is what the pages show. */
  function add(body, meta) {
    var item = {
      client_id: body.client_id,
      body: body,
      meta: meta || {},
      status: 'pending',
      error: null,
      attempts: 0,
      queued_at: new Date().toISOString()
    };
    return put(item).then(function () { announce({ type: 'outbox' }); return item; });
  }

  function withLock(fn) {
    var locks = scope.navigator && scope.navigator.locks;
    if (locks && typeof locks.request === 'function') return locks.request(LOCK, fn);
    return fn(); // no Web Locks (Safari < 15.4): the server's client_id still prevents doubles
  }

  function send(body) {
    var controller = typeof AbortController !== 'undefined' ? new AbortController() : null;
    var timer = setTimeout(function () { if (controller) controller.abort(); }, SEND_TIMEOUT_MS);
    var request = fetch(ENDPOINT, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: JSON.stringify(body),
      signal: controller ? controller.signal : undefined
    });
    return withTimeout(request, SEND_TIMEOUT_MS + 1000, 'sending').then(
      function (response) { clearTimeout(timer); return response; },
      function (error) { clearTimeout(timer); throw error; }
    );
  }

  function errorMessage(response) {
    return response.json().then(function (data) {
      var error = data && data.error;
      return (error && error.message) || ('The server said ' + response.status + '.');
    }, function () { return 'The server said ' + response.status + '.'; });
  }

  /**
   * Send every pending item, oldest first. Resolves to
   * {sent, failed, pending, retry, signedOut, advice}: `retry` means some are still waiting for the
   * network (offline, a timeout, 429 or 5xx), `signedOut` that the server answered 401, and
   * `advice` maps client_id to the server's safety advice for items just sent.
   */
  function flush() {
    return withLock(function () {
      var result = { sent: 0, failed: 0, pending: 0, retry: false, signedOut: false, advice: {} };
      return all().then(function (items) {
        var queue = items.filter(function (item) { return item.status === 'pending'; });
        result.failed = items.length - queue.length;
        var next = function () {
          var item = queue.shift();
          if (!item) return result;
          item.attempts += 1;
          return send(item.body).then(function (response) {
            if (response.status === 200 || response.status === 201) {
              result.sent += 1;
              // The server may answer with safety advice (pain high after stretching): pass it on.
              return response.json()['catch'](function () { return {}; }).then(function (data) {
                if (data && data.safety) result.advice[item.client_id] = data.safety;
                return remove(item.client_id);
              }).then(next);
            }
            if (response.status === 401 || response.status === 429 || response.status === 408 || response.status >= 500) {
              // Not refused, only not now: keep it (a 401 never deletes anything).
              result.signedOut = response.status === 401;
              result.retry = true;
              result.pending = queue.length + 1;
              return put(item).then(function () { return result; });
            }
            return errorMessage(response).then(function (message) {
              item.status = 'failed';
              item.error = message;
              result.failed += 1;
              return put(item).then(next);
            });
          }, function () {
            result.retry = true; // offline or timed out: the POST may or may not have arrived
            result.pending = queue.length + 1;
            return put(item).then(function () { return result; });
          });
        };
        return next();
      });
    }).then(function (result) {
      if (result.sent || result.failed || result.signedOut) announce({ type: 'outbox', result: result });
      return result;
    });
  }

  /** Put a failed item back in the queue (the patient tapped "Try again"). */
  function retry(clientId) {
    return all().then(function (items) {
      var item = items.filter(function (i) { return i.client_id === clientId; })[0];
      if (!item) return null;
      item.status = 'pending';
      item.error = null;
      return put(item);
    }).then(function () { announce({ type: 'outbox' }); });
  }

  function discard(clientId) {
    return remove(clientId).then(function () { announce({ type: 'outbox' }); });
  }

  scope.HWOutbox = {
    SYNC_TAG: SYNC_TAG,
    CHANNEL: CHANNEL,
    add: add,
    all: all,
    flush: flush,
    retry: retry,
    discard: discard,
    uuid: uuid,
    withTimeout: withTimeout
  };
})(self);
