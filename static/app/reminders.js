/* Settings › Reminders: the "Reminders on this phone" switch (permission, PushManager.subscribe,
 * POST/DELETE /api/me/push-subscriptions), quiet hours and the follow-up nudge (PATCH
 * /api/me/reminders), a test reminder (POST /api/me/push-test) and the next reminder's time.
 *
 * Permission is asked only inside the tap on the switch: Safari shows the prompt from a user
 * gesture only, and asking on load would be refused by most people anyway.
 */
(function () {
  'use strict';

  var HW = window.HW;
  var section = document.getElementById('reminders');
  if (!HW || !section || !section.hasAttribute('data-ready')) return;

  var SUBSCRIBE_TIMEOUT_MS = 15000;
  var OFFLINE_TEXT = 'Couldn’t turn on reminders — check your connection and try again.';
  var subscribeTimeout = SUBSCRIBE_TIMEOUT_MS;
  // Tests shorten the wait with ?subscribe_timeout_ms=...; within sane bounds only.
  var asked = Number(new URLSearchParams(location.search).get('subscribe_timeout_ms'));
  if (asked >= 200 && asked <= 60000) subscribeTimeout = asked;

  function $(id) { return document.getElementById(id); }
  var toggle = $('rem-switch');
  var status = $('rem-status');
  var denied = $('rem-denied');
  var busy = false;
  var publicKey = null;

  function say(el, text, isError) {
    el.classList.toggle('is-error', !!isError);
    el.textContent = text;
  }

  function errorMessage(response, fallback) {
    return response.json().then(function (body) {
      return (body && body.error && body.error.message) || fallback;
    }, function () { return fallback; });
  }

  // --- the next reminder ------------------------------------------------------------------

  /** "19:30", "tomorrow at 08:00" or "Tuesday at 08:00", in the patient's time zone (as the server says it). */
  function when(iso) {
    var at = new Date(iso);
    var tz = HW.timeZone;
    var days = Math.round((Date.parse(HW.localDate(tz, at)) - Date.parse(HW.localDate(tz))) / 86400000);
    var time = HW.localTime(tz, at);
    if (days <= 0) return time;
    if (days === 1) return 'tomorrow at ' + time;
    var day = '';
    try {
      day = new Intl.DateTimeFormat('en-GB', days < 7 ? { timeZone: tz, weekday: 'long' }
        : { timeZone: tz, weekday: 'short', day: 'numeric', month: 'short' }).format(at).replace(',', '');
    } catch (e) { day = HW.localDate(tz, at); }
    return day + ' at ' + time;
  }

  function refresh() {
    return HW.fetch('/api/me/reminders', { headers: { Accept: 'application/json' } }).then(function (response) {
      if (response.status === 401) return HW.signedOut();
      if (!response.ok) return;
      return response.json().then(function (data) {
        $('rem-next').hidden = !data.enabled || !data.next_at;
        $('rem-next-time').textContent = data.next_at ? when(data.next_at) : '';
      });
    })['catch'](function () { /* offline: the page's own copy stays */ });
  }

  // --- the switch ---------------------------------------------------------------------------

  function setOn(on) {
    toggle.setAttribute('aria-checked', on ? 'true' : 'false');
    $('rem-switch-state').textContent = on ? 'On' : 'Off';
  }

  function isOn() { return toggle.getAttribute('aria-checked') === 'true'; }

  function setBusy(value) {
    busy = value;
    // aria-disabled, not disabled: the switch keeps its focus while it works.
    if (value) toggle.setAttribute('aria-disabled', 'true'); else toggle.removeAttribute('aria-disabled');
    section.setAttribute('aria-busy', value ? 'true' : 'false');
  }

  function loadKey() {
    if (publicKey) return Promise.resolve(publicKey);
    return HW.fetch('/api/push/public-key', { headers: { Accept: 'application/json' } }).then(function (response) {
      if (!response.ok) throw new Error('no key');
      return response.json();
    }).then(function (data) {
      publicKey = data.public_key;
      return publicKey;
    });
  }

  /** Notification.requestPermission(), as a promise also where it only takes a callback (old Safari). */
  function requestPermission() {
    return new Promise(function (resolve) {
      var result = Notification.requestPermission(resolve);
      if (result && result.then) result.then(resolve, function () { resolve(Notification.permission); });
    });
  }

  function sameKey(subscription, bytes) {
    var key = subscription.options && subscription.options.applicationServerKey;
    if (!key) return true;
    var have = new Uint8Array(key);
    if (have.length !== bytes.length) return false;
    for (var i = 0; i < have.length; i++) if (have[i] !== bytes[i]) return false;
    return true;
  }

  /** subscribe() with a deadline: offline, Chromium's never settles. A late success is undone. */
  function subscribe(reg, key) {
    var options = { userVisibleOnly: true, applicationServerKey: HW.push.keyBytes(key) };
    var late = false;
    var attempt = reg.pushManager.getSubscription().then(function (existing) {
      // A subscription made with an older server key cannot be reused: replace it.
      if (existing && !sameKey(existing, options.applicationServerKey)) {
        return existing.unsubscribe().then(function () { return reg.pushManager.subscribe(options); });
      }
      return reg.pushManager.subscribe(options);
    });
    attempt.then(function (sub) { if (late && sub) sub.unsubscribe()['catch'](function () {}); }, function () {});
    return HW.withTimeout(attempt, subscribeTimeout, 'subscribe')['catch'](function (error) {
      late = true;
      throw error;
    });
  }

  var STOP = new Error('stop');

  function turnOn() {
    denied.hidden = true;
    if (Notification.permission === 'denied') {
      denied.hidden = false;
      say(status, 'Reminders are off: notifications are blocked.', true);
      return;
    }
    setBusy(true);
    say(status, 'Turning reminders on…');
    // Asked here, inside the tap, before anything asynchronous: Safari requires it.
    var permission = requestPermission();
    var key = loadKey()['catch'](function () { return null; });
    permission.then(function (answer) {
      if (answer === 'denied') {
        denied.hidden = false;
        say(status, 'Reminders are off: notifications are blocked.', true);
        throw STOP;
      }
      if (answer !== 'granted') {
        say(status, 'Reminders stay off. Tap the switch again when you are ready.');
        throw STOP;
      }
      return Promise.all([key, HW.push.registration()]);
    }).then(function (found) {
      if (!found[0]) throw new Error('no key');
      return subscribe(found[1], found[0]);
    }).then(function (sub) {
      return HW.push.post(sub)['catch'](function (error) {
        // The server does not have it: do not leave a subscription the next launch would re-post.
        return sub.unsubscribe()['catch'](function () {}).then(function () { throw error; });
      });
    }).then(function () {
      setOn(true);
      say(status, 'Reminders are on for this phone.');
      return refresh();
    })['catch'](function (error) {
      setOn(false);
      if (error !== STOP) say(status, OFFLINE_TEXT, true);
    }).then(function () { setBusy(false); });
  }

  function turnOff() {
    setBusy(true);
    say(status, 'Turning reminders off…');
    HW.push.registration().then(function (reg) {
      return reg.pushManager.getSubscription();
    }).then(function (sub) {
      if (!sub) return;
      var endpoint = sub.endpoint;
      // This phone first, so nothing shows even if the server cannot be told right now
      // (HW.push.forget then tells it at the next launch).
      return HW.withTimeout(sub.unsubscribe(), 10000, 'unsubscribe').then(function () {
        return HW.push.forget(endpoint);
      });
    }).then(function () {
      setOn(false);
      say(status, 'Reminders are off for this phone.');
      return refresh();
    }, function () {
      say(status, 'Couldn’t turn off reminders. Please try again.', true);
    }).then(function () { setBusy(false); });
  }

  function showSwitch() {
    $('rem-device').hidden = false;
    toggle.addEventListener('click', function () {
      if (busy) return;
      if (isOn()) turnOff(); else turnOn();
    });
    if (Notification.permission === 'denied') denied.hidden = false;
    HW.push.registration().then(function (reg) {
      return reg.pushManager.getSubscription();
    }).then(function (sub) {
      setOn(!!sub && Notification.permission === 'granted');
    })['catch'](function () { setOn(false); });
    if (navigator.onLine) loadKey()['catch'](function () {});
  }

  if (HW.ios && !HW.standalone) {
    $('rem-ios').hidden = false;  // iOS offers push only to the Home Screen app
  } else if (!HW.push.supported) {
    if (HW.ios) {
      $('rem-unsupported').textContent = 'Reminders need iOS 16.4 or later. Update this iPhone in ' +
        'Settings › General › Software Update, then open Homework from the Home Screen again.';
    }
    $('rem-unsupported').hidden = false;
  } else {
    showSwitch();
  }

  // --- quiet hours and the nudge ------------------------------------------------------------

  var prefs = $('rem-prefs');
  var prefsStatus = $('rem-prefs-status');
  prefs.hidden = false;
  prefs.addEventListener('submit', function (event) {
    event.preventDefault();
    say(prefsStatus, 'Saving…');
    HW.fetch('/api/me/reminders', {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({
        quiet_start: $('quiet-start').value,
        quiet_end: $('quiet-end').value,
        nudges: $('nudges').checked
      })
    }).then(function (response) {
      if (response.status === 401) return HW.signedOut();
      if (!response.ok) {
        return errorMessage(response, 'That did not work. Please try again.').then(function (text) {
          say(prefsStatus, text, true);
        });
      }
      say(prefsStatus, 'Saved.');
      return refresh();
    })['catch'](function () {
      say(prefsStatus, 'You are offline. Please try again when you are connected.', true);
    });
  });

  // --- a test reminder ----------------------------------------------------------------------

  var testStatus = $('rem-test-status');
  $('rem-test-box').hidden = false;
  $('rem-test').addEventListener('click', function () {
    say(testStatus, 'Sending…');
    HW.fetch('/api/me/push-test', { method: 'POST', headers: { Accept: 'application/json' } }).then(function (response) {
      if (response.status === 401) return HW.signedOut();
      if (response.status === 202) {
        say(testStatus, 'Sent. It should arrive in a few seconds.');
        return;
      }
      return errorMessage(response, 'That did not work. Please try again.').then(function (text) {
        say(testStatus, text, true);
      });
    })['catch'](function () {
      say(testStatus, 'You are offline. Please try again when you are connected.', true);
    });
  });

  refresh();
})();
