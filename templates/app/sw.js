/* Homework's service worker (served as /sw.js; the server fills in VERSION and PRECACHE).
 *
 * - static files: cache first, from a cache named after VERSION (a hash of the static
 *   files), precached at install; older versions are deleted on activate.
 * - the patient's pages (/app...) and their JSON (today, each assignment): network first
 *   with a timeout, falling back to the last copy, so the app opens with no network.
 * - the completion outbox (outbox.js) is flushed on Background Sync.
 * - reminders: every push shows a notification; a tap opens the routine or snoozes it.
 */
'use strict';

importScripts('/static/app/outbox.js');

var VERSION = '__VERSION__';
var PRECACHE = __PRECACHE__;
var STATIC_CACHE = 'homework-static-' + VERSION;
// Pages and data are the patient's own and outlive a deploy; only their format is versioned.
var PAGES_CACHE = 'homework-pages-v1';
var DATA_CACHE = 'homework-data-v1';
var NETWORK_TIMEOUT_MS = 4000;
var OFFLINE_PAGE = '/app/offline';

self.addEventListener('install', function (event) {
  event.waitUntil(
    caches.open(STATIC_CACHE).then(function (cache) {
      // cache: 'reload' skips the HTTP cache, so a new version never precaches stale files.
      return cache.addAll(PRECACHE.map(function (url) { return new Request(url, { cache: 'reload' }); }));
    }).then(function () { return self.skipWaiting(); })
  );
});

self.addEventListener('activate', function (event) {
  var keep = [STATIC_CACHE, PAGES_CACHE, DATA_CACHE];
  event.waitUntil(
    caches.keys().then(function (names) {
      return Promise.all(names.filter(function (name) {
        return name.indexOf('homework-') === 0 && keep.indexOf(name) < 0;
      }).map(function (name) { return caches['delete'](name); }));
    }).then(function () { return self.clients.claim(); })
  );
});

function isAppPage(path) {
  return path === '/app' || (path.indexOf('/app/') === 0);
}

function isData(path) {
  return path === '/api/me/today' || /^\/api\/me\/assignments\/\d+$/.test(path);
}

function storable(response) {
  return response && response.status === 200 && response.type === 'basic' && !response.redirected;
}

/** Network first; after NETWORK_TIMEOUT_MS (or a network error) the cached copy, if any. */
function networkFirst(event, cacheName, key) {
  var network = fetch(event.request).then(function (response) {
    if (storable(response)) {
      var copy = response.clone();
      event.waitUntil(caches.open(cacheName).then(function (cache) { return cache.put(key, copy); }));
    }
    return response;
  });
  var cached = function () {
    return caches.open(cacheName).then(function (cache) { return cache.match(key); }).then(function (hit) {
      return hit || caches.match(key);
    });
  };
  return new Promise(function (resolve, reject) {
    var settled = false;
    var fallback = function (error) {
      return cached().then(function (hit) {
        if (settled) return;
        if (hit) { settled = true; resolve(error ? markedOffline(hit) : hit); return; }
        if (error) { settled = true; reject(error); }
      });
    };
    var timer = setTimeout(function () { fallback(null); }, NETWORK_TIMEOUT_MS);
    network.then(function (response) {
      clearTimeout(timer);
      if (!settled) { settled = true; resolve(response); }
    }, function (error) {
      clearTimeout(timer);
      fallback(error);
    });
    // A slow answer that lost the race still refreshes the cache.
    event.waitUntil(network['catch'](function () {}));
  });
}

/** A cached copy given because the network failed, marked so the page can tell the patient:
 * a header for data, and an attribute on <body> for a page, which cannot read its own headers. */
function markedOffline(hit) {
  var headers = new Headers(hit.headers);
  headers.set('X-Homework-Offline', '1');
  var init = { status: hit.status, statusText: hit.statusText, headers: headers };
  if ((headers.get('Content-Type') || '').indexOf('text/html') !== 0) return new Response(hit.body, init);
  headers['delete']('Content-Length');
  return hit.text().then(function (html) {
    return new Response(html.replace('<body ', '<body data-served-offline '), init);
  });
}

function page(event, url) {
  return networkFirst(event, PAGES_CACHE, url.pathname)['catch'](function () {
    return caches.match(OFFLINE_PAGE).then(function (hit) {
      return hit || new Response('You are offline.', { status: 503, headers: { 'Content-Type': 'text/plain' } });
    });
  });
}

function cacheFirst(event) {
  return caches.match(event.request, { ignoreSearch: true }).then(function (hit) {
    if (hit) return hit;
    return fetch(event.request).then(function (response) {
      if (storable(response)) {
        var copy = response.clone();
        event.waitUntil(caches.open(STATIC_CACHE).then(function (cache) { return cache.put(event.request, copy); }));
      }
      return response;
    });
  });
}

self.addEventListener('fetch', function (event) {
  var request = event.request;
  if (request.method !== 'GET') return;
  var url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  var path = url.pathname;
  if (path.indexOf('/static/') === 0 || path === '/manifest.webmanifest') {
    event.respondWith(cacheFirst(event));
  } else if (isData(path)) {
    event.respondWith(networkFirst(event, DATA_CACHE, path));
  } else if (isAppPage(path) && (request.mode === 'navigate' || (request.headers.get('Accept') || '').indexOf('text/html') >= 0)) {
    event.respondWith(page(event, url));
  }
  // Everything else (the practitioner's pages, other API calls, /join links) goes to the network untouched.
});

self.addEventListener('sync', function (event) {
  if (event.tag !== self.HWOutbox.SYNC_TAG) return;
  event.waitUntil(self.HWOutbox.flush().then(function (result) {
    // Rejecting asks the browser to try again later, with its own back-off.
    if (result.retry && !result.signedOut) throw new Error('outbox not empty yet');
  }));
});

self.addEventListener('message', function (event) {
  if (event.data && event.data.type === 'version' && event.ports && event.ports[0]) {
    event.ports[0].postMessage({ version: VERSION });
  }
});

// --- reminders (Web Push) ---------------------------------------------------------------------
//
// Every push shows a notification, whatever it carries: Safari revokes the permission of a
// site whose push shows nothing. The payload is server/reminders.py's
// {title, body, url, tag, kind: reminder|nudge|snooze|test, assignment_id, date, time}.

var ICON = '/static/icons/icon-192.png';
var BADGE = '/static/icons/badge-96.png';
var GENERIC = {
  title: 'Time for your stretches',
  body: 'Open Homework to see today’s exercises.',
  url: '/app',
  tag: 'homework-reminder',
  kind: 'reminder'
};

/** The payload of a push as an object with at least title, body, url, tag and kind. */
function readPayload(data) {
  var payload = null;
  try { payload = data ? data.json() : null; } catch (e) { payload = null; }
  if (!payload || typeof payload !== 'object' || Array.isArray(payload)) payload = {};
  var out = {};
  Object.keys(payload).forEach(function (k) { out[k] = payload[k]; });
  Object.keys(GENERIC).forEach(function (k) {
    if (typeof out[k] !== 'string' || !out[k]) out[k] = GENERIC[k];
  });
  out.url = sameOriginUrl(out.url);
  return out;
}

/** url when it is ours (absolute or relative), else the app's home: a push never opens another site. */
function sameOriginUrl(url) {
  try {
    var parsed = new URL(url, self.location.origin);
    if (parsed.origin === self.location.origin) return parsed.pathname + parsed.search + parsed.hash;
  } catch (e) { /* not a URL */ }
  return '/app';
}

function canSnooze(payload) {
  return payload.kind !== 'test' && !!payload.assignment_id && !!payload.date && !!payload.time;
}

function notificationOptions(payload) {
  var options = {
    body: payload.body,
    icon: ICON,
    badge: BADGE,
    tag: payload.tag,
    // A nudge replaces the first reminder of its slot and should be heard again.
    renotify: payload.kind === 'nudge',
    data: payload
  };
  var maxActions = self.Notification && self.Notification.maxActions;
  if (maxActions && canSnooze(payload)) {
    options.actions = [{ action: 'start', title: 'Start' }, { action: 'snooze', title: 'Snooze 30 min' }];
  }
  return options;
}

function showReminder(payload) {
  return self.registration.showNotification(payload.title, notificationOptions(payload))['catch'](function () {
    // Options some browser refuses (actions, renotify): still show something.
    return self.registration.showNotification(GENERIC.title, { body: GENERIC.body, icon: ICON, tag: payload.tag, data: payload });
  });
}

self.addEventListener('push', function (event) {
  event.waitUntil(showReminder(readPayload(event.data)));
});

function postJson(url, method, body) {
  return fetch(url, {
    method: method,
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify(body)
  }).then(function (response) {
    if (!response.ok) throw new Error(method + ' ' + url + ': ' + response.status);
    return response;
  });
}

/** Focus an open app window and take it to url, or open a new one. */
function openApp(url) {
  var target = new URL(url, self.location.origin).href;
  return self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (windows) {
    var ours = windows.filter(function (w) { return new URL(w.url).origin === self.location.origin; });
    var client = ours.filter(function (w) { return w.url === target; })[0] ||
      ours.filter(function (w) { return isAppPage(new URL(w.url).pathname); })[0] || ours[0];
    if (!client) {
      return Promise.resolve(self.clients.openWindow(target))['catch'](function () { return null; })
        .then(function () { return { how: 'open', url: url }; });
    }
    // Focus first, while the click still counts as a user gesture; then navigate if needed.
    return Promise.resolve(client.focus())['catch'](function () { return client; }).then(function () {
      if (client.url === target) return { how: 'focus', url: url };
      return Promise.resolve(client.navigate(target))['catch'](function () {
        // Not controlled by this worker (navigate refuses): a new window instead.
        return self.clients.openWindow(target);
      })['catch'](function () { return null; }).then(function () { return { how: 'navigate', url: url }; });
    });
  });
}

/** Remind again in 30 minutes; offline, say so rather than fail without a word. */
function snooze(payload) {
  return postJson('/api/me/reminders/snooze', 'POST', {
    assignment_id: payload.assignment_id, date: payload.date, time: payload.time
  }).then(function () {
    return { how: 'snooze', url: payload.url };
  }, function () {
    var again = {};
    Object.keys(payload).forEach(function (k) { again[k] = payload[k]; });
    again.kind = 'test';  // no actions on the retry notice
    return self.registration.showNotification('Could not snooze', {
      body: 'No connection. Tap to open your exercises.', icon: ICON, badge: BADGE, tag: payload.tag, data: again
    }).then(function () { return { how: 'snooze-failed', url: payload.url }; });
  });
}

/**
 * What a tap on a reminder does (the notificationclick listener's logic, callable from tests:
 * a real click cannot be simulated). Resolves to {how: open|focus|navigate|snooze|snooze-failed, url}.
 */
function handleNotificationClick(notification, action) {
  var payload = readPayloadObject(notification.data);
  notification.close();
  if (action === 'snooze' && canSnooze(payload)) return snooze(payload);
  return openApp(payload.url);
}

function readPayloadObject(data) {
  return readPayload({ json: function () { return data; } });
}

self.addEventListener('notificationclick', function (event) {
  event.waitUntil(handleNotificationClick(event.notification, event.action));
});

function keyBytes(base64url) {
  var text = atob(base64url.replace(/-/g, '+').replace(/_/g, '/') + '==='.slice((base64url.length + 3) % 4));
  var bytes = new Uint8Array(text.length);
  for (var i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** The push service replaced or expired the subscription: make a new one and tell the server. */
function renewSubscription(oldSubscription, newSubscription) {
  var known = oldSubscription && oldSubscription.options && oldSubscription.options.applicationServerKey;
  var key = known ? Promise.resolve(known) : fetch('/api/push/public-key', { credentials: 'same-origin' })
    .then(function (response) { return response.json(); })
    .then(function (data) { return keyBytes(data.public_key); });
  var made = newSubscription ? Promise.resolve(newSubscription) : key.then(function (applicationServerKey) {
    return self.registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: applicationServerKey });
  });
  return made.then(function (subscription) {
    return postJson('/api/me/push-subscriptions', 'POST', subscription.toJSON()).then(function () {
      var old = oldSubscription && oldSubscription.endpoint;
      if (!old || old === subscription.endpoint) return subscription;
      return postJson('/api/me/push-subscriptions', 'DELETE', { endpoint: old })['catch'](function () {})
        .then(function () { return subscription; });
    });
  });
}

self.addEventListener('pushsubscriptionchange', function (event) {
  event.waitUntil(renewSubscription(event.oldSubscription, event.newSubscription));
});
