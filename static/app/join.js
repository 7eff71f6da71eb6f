/* Join with the code from the clinic: accept it as typed (any case, spaces, dashes), post
 * it to /api/join and open the app. */
(function () {
  'use strict';

  var form = document.getElementById('join-form');
  if (!form || !window.HW) return;
  var input = document.getElementById('code');
  var error = document.getElementById('code-error');
  var button = document.getElementById('join-button');

  if (/[?&]signed_out=1/.test(location.search)) document.getElementById('signed-out-note').hidden = false;

  function clean(text) { return text.toUpperCase().replace(/[^A-Z0-9]/g, ''); }

  input.addEventListener('input', function () {
    input.removeAttribute('aria-invalid');
    error.textContent = '';
  });
  input.addEventListener('blur', function () {
    var code = clean(input.value);
    if (code.length === 8) input.value = code.slice(0, 4) + '-' + code.slice(4);
  });

  function fail(message) {
    error.textContent = message;
    input.setAttribute('aria-invalid', 'true');
    button.disabled = false;
    button.textContent = 'Open my exercises';
    input.focus();
  }

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    var code = clean(input.value);
    if (code.length !== 8) {
      fail(code.length ? 'The code has 8 letters and numbers. Please check it.' : 'Please type the code from your clinic.');
      return;
    }
    button.disabled = true;
    button.textContent = 'Checking…';
    window.HW.fetch('/api/join', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ code: code })
    }, 15000).then(function (response) {
      if (response.ok) { location.assign('/app'); return; }
      if (response.status === 429) fail('Too many tries. Please wait 15 minutes and try again.');
      else fail('That code did not work. Check it and try again, or ask your clinic for a new one.');
    }, function () {
      fail('No connection. Please check your internet and try again.');
    });
  });
})();
