/* Shared by every patient page: the service worker, the connection and outbox notices,
 * flushing the outbox (on load, on `online`, on coming back to the app, and again while
 * sessions wait), sign-out on a 401, and install help. */
(function () {
  'use strict';

  var Outbox = window.HWOutbox;
  var body = document.body;
  var signedIn = body.hasAttribute('data-signed-in');
  var READY_TIMEOUT_MS = 5000;
  var API_TIMEOUT_MS = 8000;

  function $(selector, root) { return (root || document).querySelector(selector); }

  /** fetch with a timeout: on a bad connection a request may otherwise never settle. Each
   * answer also says whether the server could be reached (see updateNetwork). */
  function fetchWithTimeout(url, options, ms) {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, ms || API_TIMEOUT_MS);
    var opts = Object.assign({ credentials: 'same-origin' }, options || {}, { signal: controller.signal });
    return fetch(url, opts).then(
      function (response) {
        clearTimeout(timer);
        // The service worker marks a cached copy it gave because the network failed.
        reached(response.headers.get('X-Homework-Offline') !== '1');
        return response;
      },
      function (error) { clearTimeout(timer); reached(false); throw error; }
    );
  }

  // A page the service worker took from its cache because the network failed says so itself.
  var unreachable = body.hasAttribute('data-served-offline');
  function reached(ok) {
    unreachable = !ok;
    updateNetwork();
  }

  /** The date (YYYY-MM-DD) in the patient's time zone, which the server counts days in. */
  function localDate(timeZone, when) {
    var parts = {};
    try {
      new Intl.DateTimeFormat('en-CA', { timeZone: timeZone, year: 'numeric', month: '2-digit', day: '2-digit' })
        .formatToParts(when || new Date())
        .forEach(function (p) { parts[p.type] = p.value; });
      return parts.year + '-' + parts.month + '-' + parts.day;
    } catch (e) {
      var d = when || new Date();
      return d.getFullYear() + '-' + String(d.getMonth() + 1).padStart(2, '0') + '-' + String(d.getDate()).padStart(2, '0');
    }
  }

  function localTime(timeZone, when) {
    try {
      return new Intl.DateTimeFormat('en-GB', { timeZone: timeZone, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
        .format(when || new Date());
    } catch (e) {
      return '12:00';
    }
  }

  var DATA_CACHES = ['homework-pages-v1', 'homework-data-v1'];

  /** The server no longer knows this phone: forget cached pages (never the outbox) and ask for a code.
   * Once: the page's flush and the worker's (announced) can both hear the 401, and a second
   * navigation would abort the first. */
  var leaving = null;
  function signedOut() {
    if (leaving) return leaving;
    var clear = window.caches ? Promise.all(DATA_CACHES.map(function (n) { return caches['delete'](n); })) : Promise.resolve();
    leaving = Outbox.withTimeout(clear, 3000, 'clearing caches')['catch'](function () {}).then(function () {
      if (body.dataset.page !== 'join') location.assign('/app/join?signed_out=1');
    });
    return leaving;
  }

  // --- service worker ---------------------------------------------------------------------

  var controlled = Promise.resolve(false);
  // A page loaded before the worker took over did not pass through it, so is not cached yet.
  var loadedThroughWorker = 'serviceWorker' in navigator && !!navigator.serviceWorker.controller;
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js', { scope: '/' })['catch'](function () {});
    controlled = navigator.serviceWorker.controller ? Promise.resolve(true) : Outbox.withTimeout(new Promise(function (resolve) {
      navigator.serviceWorker.addEventListener('controllerchange', function () { resolve(true); }, { once: true });
    }), READY_TIMEOUT_MS, 'service worker')['catch'](function () { return false; });
  }

  /** Ask for Background Sync of the outbox; where there is none, the pages flush it (see flush). */
  function registerSync() {
    if (!('serviceWorker' in navigator)) return Promise.resolve(false);
    return Outbox.withTimeout(navigator.serviceWorker.ready, READY_TIMEOUT_MS, 'service worker ready').then(function (reg) {
      if (!reg.sync) return false;
      return reg.sync.register(Outbox.SYNC_TAG).then(function () { return true; });
    })['catch'](function () { return false; });
  }

  var WARM_EVERY_MS = 10 * 60 * 1000;

  /** Load pages and data into the worker's caches so they open with no network later. */
  function warm(urls) {
    return controlled.then(function (ok) {
      if (!ok || !navigator.onLine) return;
      var key = urls.join(' ');
      try {
        var last = JSON.parse(sessionStorage.getItem('hw-warm') || 'null');
        if (last && last.key === key && Date.now() - last.at < WARM_EVERY_MS) return;
        sessionStorage.setItem('hw-warm', JSON.stringify({ key: key, at: Date.now() }));
      } catch (e) { /* storage off: warm every time */ }
      return Promise.all(urls.map(function (url) {
        var html = url.indexOf('/api/') !== 0;
        return fetchWithTimeout(url, { headers: { Accept: html ? 'text/html' : 'application/json' } }, 15000)
          .then(function (r) { if (r.status === 401) return signedOut(); })['catch'](function () {});
      }));
    });
  }

  // --- outbox: notices and flushing -------------------------------------------------------

  var listeners = [];
  function onOutboxChange(fn) { listeners.push(fn); }

  function pendingText(n) {
    return n === 1
      ? 'One session is saved on this phone and will sync when you are online.'
      : n + ' sessions are saved on this phone and will sync when you are online.';
  }

  function refreshOutbox() {
    return Outbox.all().then(function (items) {
      var pending = items.filter(function (i) { return i.status === 'pending'; }).length;
      var failed = items.length - pending;
      var note = $('#outbox-status');
      if (note) {
        note.classList.toggle('is-failed', failed > 0);
        note.classList.toggle('is-waiting', failed === 0 && pending > 0);
        if (failed) {
          note.textContent = (failed === 1 ? 'One session could not be saved.' : failed + ' sessions could not be saved.') +
            (body.dataset.page === 'today' ? ' See below.' : ' See Today.');
        } else if (pending) {
          note.textContent = pendingText(pending);
        }
        note.hidden = !(failed || pending) || body.dataset.page === 'join';
      }
      listeners.forEach(function (fn) { fn(items); });
      return items;
    })['catch'](function () { return []; });
  }

  var flushing = Promise.resolve(null);

  /** Safety advice from the server about a completion just sent: show it where it cannot be missed. */
  function showAdvice(result) {
    var advice = result && result.advice ? Object.keys(result.advice).map(function (k) { return result.advice[k]; }) : [];
    if (!advice.length || document.getElementById('safety-advice')) return;
    var box = document.createElement('div');
    box.id = 'safety-advice';
    box.className = 'pa-advice';
    box.setAttribute('role', 'alert');
    var title = document.createElement('strong');
    title.textContent = 'Please take care';
    var text = document.createElement('p');
    text.textContent = advice[0].advice;
    box.append(title, text);
    var main = document.getElementById('main');
    if (main) main.prepend(box);
  }

  /** Send the outbox; calls queue behind each other, so an item added during a run is sent by the next. */
  function flush() {
    if (!signedIn) return Promise.resolve(null);
    flushing = flushing.then(function () {
      return Outbox.flush().then(function (result) {
        if (result.signedOut) signedOut();
        showAdvice(result);
        return result;
      })['catch'](function () { return null; });
    }).then(function (result) {
      retryLater(result);
      return refreshOutbox().then(function () { return result; });
    });
    return flushing;
  }

  // `online` does not always come: a network with no way out is "online" all along, and a
  // page opened offline may never hear it. So while sessions wait, the page tries again,
  // from 15 s apart up to every 2 minutes.
  var RETRY_FIRST_MS = 15000;
  var RETRY_MAX_MS = 120000;
  var retryDelay = RETRY_FIRST_MS;
  var retryTimer = null;
  function retryLater(result) {
    clearTimeout(retryTimer);
    // All sent (or refused, for the patient to decide), no outbox, or signed out (the page is leaving).
    if (!result || !result.retry || result.signedOut) {
      retryDelay = RETRY_FIRST_MS;
      return;
    }
    retryTimer = setTimeout(flush, retryDelay);
    retryDelay = Math.min(retryDelay * 2, RETRY_MAX_MS);
  }

  /** Queue a completion, then try to send it; resolves to 'sent', 'queued' or {failed: message}. */
  function record(bodyData, meta) {
    return Outbox.add(bodyData, meta).then(function () {
      registerSync();
      return Outbox.withTimeout(flush(), 20000, 'sending')['catch'](function () { return null; });
    }).then(function () {
      return Outbox.all().then(function (items) {
        var item = items.filter(function (i) { return i.client_id === bodyData.client_id; })[0];
        if (!item) return 'sent';
        if (item.status === 'failed') return { failed: item.error };
        return 'queued';
      });
    });
  }

  if (typeof BroadcastChannel !== 'undefined') {
    new BroadcastChannel(Outbox.CHANNEL).onmessage = function (event) {
      var data = event.data || {};
      if (data.type !== 'outbox') return;
      if (data.result && data.result.signedOut) signedOut();
      showAdvice(data.result);
      refreshOutbox();
    };
  }

  /** The offline note: navigator.onLine alone says true on a network with no way out (and in
   * a document opened while offline, in some Chromium builds), so a request that failed counts too. */
  function updateNetwork() {
    var note = $('#net-status');
    if (note) note.hidden = navigator.onLine && !unreachable;
  }
  window.addEventListener('online', function () { reached(true); flush(); });
  // Back in the app (a phone mostly wakes it rather than reloading it): send what waits.
  document.addEventListener('visibilitychange', function () { if (!document.hidden) flush(); });
  window.addEventListener('offline', updateNetwork);
  updateNetwork();

  // --- install help -----------------------------------------------------------------------

  var standalone = navigator.standalone === true ||
    (window.matchMedia && window.matchMedia('(display-mode: standalone)').matches);
  var ios = /iPhone|iPad|iPod/.test(navigator.userAgent) ||
    (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1);
  var dismissed = false;
  try { dismissed = localStorage.getItem('hw-install-dismissed') === '1'; } catch (e) { /* private mode */ }

  if (ios && !standalone) {
    document.querySelectorAll('[data-ios-install]').forEach(function (el) {
      el.hidden = dismissed && el.querySelector('[data-dismiss-install]') !== null;
    });
  }
  document.addEventListener('click', function (event) {
    var dismiss = event.target.closest('[data-dismiss-install]');
    if (dismiss) {
      try { localStorage.setItem('hw-install-dismissed', '1'); } catch (e) { /* private mode */ }
      dismiss.closest('[data-ios-install]').hidden = true;
    }
  });

  var installPrompt = null;
  window.addEventListener('beforeinstallprompt', function (event) {
    event.preventDefault();
    installPrompt = event;
    document.querySelectorAll('[data-android-install]').forEach(function (el) { el.hidden = false; });
  });
  document.addEventListener('click', function (event) {
    if (!event.target.closest('[data-install-button]') || !installPrompt) return;
    installPrompt.prompt();
    installPrompt.userChoice.then(function () {
      installPrompt = null;
      document.querySelectorAll('[data-android-install]').forEach(function (el) { el.hidden = true; });
    });
  });
  window.addEventListener('appinstalled', function () {
    document.querySelectorAll('[data-android-install]').forEach(function (el) { el.hidden = true; });
  });

  // --- reminders: this phone's push subscription -----------------------------------------

  var pushSupported = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  var FORGET_KEY = 'hw-push-forget';

  /** The server's VAPID key (base64url) as the bytes PushManager.subscribe() wants. */
  function keyBytes(base64url) {
    var text = atob(base64url.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((base64url.length + 3) % 4));
    var bytes = new Uint8Array(text.length);
    for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
    return bytes;
  }

  function pushRegistration() {
    return Outbox.withTimeout(navigator.serviceWorker.ready, READY_TIMEOUT_MS, 'service worker ready');
  }

  function checked(response) {
    if (response.status === 401) { signedOut(); throw new Error('signed out'); }
    if (!response.ok) throw new Error('refused: ' + response.status);
    return response;
  }

  function postSubscription(subscription) {
    return fetchWithTimeout('/api/me/push-subscriptions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify(subscription.toJSON())
    }).then(checked);
  }

  /** Tell the server to stop sending to endpoint; offline, remember to tell it at the next launch. */
  function forgetSubscription(endpoint) {
    return fetchWithTimeout('/api/me/push-subscriptions', {
      method: 'DELETE',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ endpoint: endpoint })
    }).then(checked).then(function () {
      try { localStorage.removeItem(FORGET_KEY); } catch (e) { /* private mode */ }
      return true;
    }, function () {
      try { localStorage.setItem(FORGET_KEY, endpoint); } catch (e) { /* private mode */ }
      return false;
    });
  }

  /** At every launch, post this phone's subscription again: Apple's endpoints can expire silently. */
  function syncPush() {
    if (!signedIn || !pushSupported || !navigator.onLine) return Promise.resolve(null);
    var forget = null;
    try {
      if (sessionStorage.getItem('hw-push-synced') === '1') return Promise.resolve(null);
      forget = localStorage.getItem(FORGET_KEY);
    } catch (e) { /* storage off: sync every page */ }
    return (forget ? forgetSubscription(forget) : Promise.resolve(true)).then(function () {
      if (Notification.permission !== 'granted') return null;
      return pushRegistration().then(function (reg) { return reg.pushManager.getSubscription(); }).then(function (sub) {
        return sub && sub.endpoint !== forget ? postSubscription(sub).then(function () { return sub; }) : null;
      });
    }).then(function (sub) {
      try { sessionStorage.setItem('hw-push-synced', '1'); } catch (e) { /* storage off */ }
      return sub;
    })['catch'](function () { return null; });
  }

  /** A "next reminder" line from a page cached earlier must not show a time already past. */
  document.querySelectorAll('[data-reminder-at]').forEach(function (el) {
    if (Date.parse(el.getAttribute('data-reminder-at')) < Date.now()) el.hidden = true;
  });

  // --- start ------------------------------------------------------------------------------

  window.HW = {
    fetch: fetchWithTimeout,
    localDate: localDate,
    localTime: localTime,
    timeZone: body.dataset.tz || (Intl.DateTimeFormat().resolvedOptions().timeZone) || 'UTC',
    record: record,
    flush: flush,
    refreshOutbox: refreshOutbox,
    onOutboxChange: onOutboxChange,
    signedOut: signedOut,
    warm: warm,
    controlled: controlled,
    standalone: standalone,
    ios: ios,
    withTimeout: Outbox.withTimeout,
    push: {
      supported: pushSupported,
      keyBytes: keyBytes,
      registration: pushRegistration,
      post: postSubscription,
      forget: forgetSubscription,
      sync: syncPush
    }
  };

  refreshOutbox();
  if (signedIn) {
    flush();
    if (!loadedThroughWorker) warm([location.pathname]);
    HW.push.synced = syncPush();
  }
})();
