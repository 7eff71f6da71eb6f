/* Homework's service worker (served as /sw.js; the server fills in VERSION and PRECACHE).
 *
 * - static files: cache first, from a cache named after VERSION (a hash of the static
 *   files), precached at install; older versions are deleted on activate.
 * - the patient's pages (/app...) and their JSON (today, each assignment): network first
 *   with a timeout, falling back to the last copy, so the app opens with no network.
 * - the completion outbox (outbox.js) is flushed on Background Sync.
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
        if (hit) { settled = true; resolve(hit); return; }
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
