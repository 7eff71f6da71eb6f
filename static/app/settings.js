/* Settings: suggest this phone's time zone and save it with PATCH /api/me; sign out with
 * DELETE /api/me/device, warning first about anything not yet sent. */
(function () {
  'use strict';

  var HW = window.HW;
  var form = document.getElementById('tz-form');
  if (!HW || !form) return;
  var select = document.getElementById('timezone');
  var status = document.getElementById('tz-status');

  var detected = '';
  try { detected = Intl.DateTimeFormat().resolvedOptions().timeZone || ''; } catch (e) { /* old browser */ }
  var known = Array.prototype.some.call(select.options, function (o) { return o.value === detected; });

  function suggest() {
    var box = document.getElementById('tz-suggest');
    box.hidden = !known || select.value === detected || HW.timeZone === detected;
    document.getElementById('tz-detected').textContent = detected.replace(/_/g, ' ');
  }
  suggest();

  function saveZone(zone) {
    status.classList.remove('is-error');
    status.textContent = 'Saving…';
    return HW.fetch('/api/me', {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ timezone: zone })
    }).then(function (response) {
      if (response.status === 401) return HW.signedOut();
      if (!response.ok) throw new Error('refused');
      HW.timeZone = zone;
      document.body.dataset.tz = zone;
      select.value = zone;
      status.textContent = 'Saved. Your times now follow ' + zone.replace(/_/g, ' ') + '.';
      suggest();
    })['catch'](function () {
      status.classList.add('is-error');
      status.textContent = navigator.onLine
        ? 'That did not work. Please try again.'
        : 'You are offline. Please try again when you are connected.';
    });
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    saveZone(select.value);
  });
  document.getElementById('tz-use').addEventListener('click', function () { saveZone(detected); });

  var out = document.getElementById('sign-out-form');
  var warning = document.getElementById('out-warning');
  var confirmed = false;
  out.addEventListener('submit', function (event) {
    event.preventDefault();
    window.HWOutbox.all()['catch'](function () { return []; }).then(function (items) {
      if (items.length && !confirmed) {
        confirmed = true;
        warning.hidden = false;
        warning.textContent = (items.length === 1 ? 'One session has' : items.length + ' sessions have') +
          ' not reached your clinic yet. It stays on this phone and is sent if you sign in again. Tap again to sign out anyway.';
        return;
      }
      return HW.fetch('/api/me/device', { method: 'DELETE' }).then(function (response) {
        if (response.status !== 204 && response.status !== 401) throw new Error('refused');
        return HW.signedOut();
      })['catch'](function () {
        warning.hidden = false;
        warning.textContent = 'Could not sign out: you need to be online. Please try again.';
      });
    });
  });
})();
