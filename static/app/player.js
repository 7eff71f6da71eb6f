/* The routine player: one exercise at a time, a hold timer that counts reps, sides and sets
 * through on its own, rests between sets, and at the end the pain and effort ratings,
 * recorded through the outbox so it is never lost offline. */
(function () {
  'use strict';

  var form = document.getElementById('player');
  if (!form || !window.HW) return;
  var HW = window.HW;
  var data = JSON.parse(document.getElementById('routine-data').textContent);
  var SWITCH_SECONDS = 5;
  var TICK_MS = 200;

  function $(id) { return document.getElementById(id); }

  var steps = [$('intro')].concat(
    Array.prototype.slice.call(form.querySelectorAll('.pa-exercise')),
    [$('finish'), $('result')]
  );
  var exerciseCount = data.items.length;
  var finishIndex = exerciseCount + 1;
  var resultIndex = exerciseCount + 2;
  // From the address, not the markup: offline, this page comes from a cached copy made without it.
  var asked = new URLSearchParams(location.search).get('time') || '';
  var slotTime = /^([01]\d|2[0-3]):[0-5]\d$/.test(asked) ? asked : (form.dataset.time || '');
  if (slotTime) $('for-time').textContent = ' · for ' + slotTime;
  var timer = $('timer');
  var ui = {
    side: $('t-side'), phase: $('t-phase'), count: $('t-count'), unit: $('t-unit'), where: $('t-where'),
    ring: $('t-ring'), live: $('t-live'), toggle: $('t-toggle'), skipRest: $('t-skip-rest'),
    back: $('t-back'), skip: $('t-skip'), sound: $('t-sound'), progress: $('progress')
  };
  var current = 0;

  // --- keeping the screen on, vibration and sound ----------------------------------------

  var wakeLock = null;
  function keepAwake() {
    if (!('wakeLock' in navigator) || wakeLock) return;
    wakeLock = 'pending';
    window.HWOutbox.withTimeout(navigator.wakeLock.request('screen'), 3000, 'wake lock').then(function (lock) {
      if (!engine.running) { lock.release()['catch'](function () {}); wakeLock = null; return; }
      wakeLock = lock;
      lock.addEventListener('release', function () { if (wakeLock === lock) wakeLock = null; });
    }, function () { wakeLock = null; });
  }
  function letSleep() {
    if (wakeLock && wakeLock !== 'pending') wakeLock.release()['catch'](function () {});
    wakeLock = null;
  }

  var audio = null;
  try { ui.sound.checked = localStorage.getItem('hw-sound') === '1'; } catch (e) { /* private mode */ }
  ui.sound.addEventListener('change', function () {
    try { localStorage.setItem('hw-sound', ui.sound.checked ? '1' : '0'); } catch (e) { /* private mode */ }
    if (ui.sound.checked) { unlockAudio(); beep(660, 0.12); }
  });
  function unlockAudio() {
    // Browsers only allow sound started from a tap: create and resume the context there.
    if (!ui.sound.checked) return;
    var Context = window.AudioContext || window.webkitAudioContext;
    if (!Context) return;
    if (!audio) audio = new Context();
    if (audio.state === 'suspended') audio.resume()['catch'](function () {});
  }
  function beep(frequency, seconds) {
    if (!ui.sound.checked || !audio) return;
    var t = audio.currentTime;
    var osc = audio.createOscillator();
    var gain = audio.createGain();
    osc.type = 'sine';
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.35, t + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + seconds);
    osc.connect(gain);
    gain.connect(audio.destination);
    osc.start(t);
    osc.stop(t + seconds + 0.05);
  }
  function cue(kind) {
    if (navigator.vibrate) {
      try { navigator.vibrate(kind === 'hold' ? 250 : [90, 70, 90]); } catch (e) { /* not allowed */ }
    }
    if (kind === 'hold') beep(880, 0.25); else { beep(660, 0.12); setTimeout(function () { beep(880, 0.12); }, 180); }
  }

  // --- the timer --------------------------------------------------------------------------

  function sidesOf(item) {
    if (item.sides === 'both') return ['left', 'right'];
    if (item.sides === 'left' || item.sides === 'right') return [item.sides];
    return [null];
  }

  /** Every phase of one exercise, in order: holds, relaxes, side switches and rests. */
  function buildPhases(item) {
    var phases = [];
    var sides = sidesOf(item);
    var relax = item.hold_seconds >= data.relax_from_hold ? data.relax_seconds : 0;
    for (var set = 1; set <= item.sets; set++) {
      sides.forEach(function (side, s) {
        if (item.hold_seconds > 0) {
          for (var rep = 1; rep <= item.reps; rep++) {
            phases.push({ kind: 'hold', seconds: item.hold_seconds, rep: rep, set: set, side: side });
            if (rep < item.reps && relax) phases.push({ kind: 'relax', seconds: relax, rep: rep, set: set, side: side });
          }
        } else {
          phases.push({ kind: 'count', seconds: 0, rep: item.reps, set: set, side: side });
        }
        if (s < sides.length - 1) phases.push({ kind: 'switch', seconds: SWITCH_SECONDS, set: set, side: sides[s + 1] });
      });
      if (set < item.sets && item.rest_seconds > 0) phases.push({ kind: 'rest', seconds: item.rest_seconds, set: set, side: null });
    }
    return phases;
  }

  var engine = { item: null, phases: [], i: 0, running: false, started: false, endsAt: 0, remaining: 0, interval: null };

  function phase() { return engine.phases[engine.i] || null; }
  function finished() { return engine.i >= engine.phases.length; }

  function load(item) {
    stop();
    engine.item = item;
    engine.phases = buildPhases(item);
    engine.i = 0;
    engine.started = false;
    engine.remaining = engine.phases.length ? engine.phases[0].seconds * 1000 : 0;
    render(true);
  }

  function start() {
    var p = phase();
    if (!p || p.kind === 'count') return;
    unlockAudio();
    engine.running = true;
    engine.started = true;
    engine.endsAt = Date.now() + engine.remaining;
    clearInterval(engine.interval);
    engine.interval = setInterval(tick, TICK_MS);
    keepAwake();
    render(true);
  }

  function stop() {
    if (engine.running) engine.remaining = Math.max(0, engine.endsAt - Date.now());
    engine.running = false;
    clearInterval(engine.interval);
    engine.interval = null;
    letSleep();
  }

  /** Move to the next phase; `at` is when the previous one ended (catching up after a throttled tab). */
  function advance(at) {
    var p = phase();
    if (p && p.kind !== 'count') cue(p.kind);
    engine.i += 1;
    var next = phase();
    if (!next) {
      stop();
      engine.remaining = 0;
      render(true);
      return;
    }
    engine.remaining = next.seconds * 1000;
    if (next.kind === 'count') {
      stop();
      engine.remaining = 0;
    } else if (engine.running) {
      engine.endsAt = at + engine.remaining;
    }
    render(true);
  }

  function tick() {
    var now = Date.now();
    while (engine.running && now >= engine.endsAt) advance(engine.endsAt);
    render(false);
  }

  document.addEventListener('visibilitychange', function () {
    if (document.visibilityState !== 'visible') return;
    if (engine.running) { keepAwake(); tick(); }
  });

  var SIDE = { left: 'Left side', right: 'Right side' };
  var lastAnnounced = '';

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }

  function render(changed) {
    var p = phase();
    var item = engine.item;
    var done = finished();
    var left = engine.running ? Math.max(0, engine.endsAt - Date.now()) : engine.remaining;
    var total = p ? p.seconds * 1000 : 1;
    timer.classList.toggle('is-rest', !!p && (p.kind === 'rest' || p.kind === 'relax' || p.kind === 'switch'));
    timer.classList.toggle('is-done', done);

    var label, count, unit, where = '';
    if (done) {
      label = 'Done';
      count = '✓';
      unit = 'well done';
    } else if (p.kind === 'count') {
      label = 'Your pace';
      count = String(p.rep);
      unit = p.rep === 1 ? 'rep' : 'reps';
    } else {
      label = { hold: 'Hold', relax: 'Relax', rest: 'Rest', switch: 'Switch sides' }[p.kind];
      if (!engine.started) label = 'Ready';
      else if (!engine.running) label = 'Paused';
      count = String(Math.ceil(left / 1000));
      unit = count === '1' ? 'second' : 'seconds';
    }
    if (p && !done) {
      var bits = [];
      if (p.kind === 'hold' && item.reps > 1) bits.push('Rep ' + p.rep + ' of ' + item.reps);
      if (p.kind === 'relax') bits.push('Next: rep ' + (p.rep + 1) + ' of ' + item.reps);
      if (p.kind === 'switch') bits.push('Get ready for your ' + p.side + ' side');
      if (p.kind === 'rest') bits.push('Next: set ' + (p.set + 1) + ' of ' + item.sets);
      if (p.kind === 'count') bits.push('Do ' + plural(p.rep, 'slow rep') + ', then tap Reps done');
      if (item.sets > 1 && p.kind !== 'rest') bits.push('Set ' + p.set + ' of ' + item.sets);
      where = bits.join(' · ');
    } else if (done) {
      where = current < exerciseCount ? 'Ready for the next one when you are.' : 'That was the last one.';
    }
    ui.phase.textContent = label;
    if (ui.count.textContent !== count) ui.count.textContent = count;
    ui.unit.textContent = unit;
    ui.where.textContent = where;
    var side = p && !done ? (p.kind === 'switch' ? 'Now: ' + SIDE[p.side].toLowerCase() : SIDE[p.side]) : '';
    ui.side.hidden = !side;
    ui.side.textContent = side || '';
    var fraction = done ? 1 : (p && p.kind !== 'count' && total ? 1 - left / total : 0);
    ui.ring.setAttribute('stroke-dashoffset', String(Math.round(100 * fraction * 10) / 10));

    if (!changed) return;
    ui.toggle.textContent = done
      ? (current < exerciseCount ? 'Next exercise' : 'Finish')
      : p.kind === 'count' ? 'Reps done'
      : engine.running ? 'Pause' : engine.started ? 'Resume' : 'Start';
    ui.toggle.classList.toggle('is-running', engine.running);
    ui.skipRest.hidden = done || !p || (p.kind !== 'rest' && p.kind !== 'switch' && p.kind !== 'relax') || !engine.running;
    ui.skipRest.textContent = p && p.kind === 'rest' ? 'Skip the rest' : 'Skip ahead';
    var say = done ? 'Exercise done.' : label + '. ' + where + (side ? '. ' + side : '');
    if (say !== lastAnnounced && (engine.started || done)) { ui.live.textContent = say; lastAnnounced = say; }
  }

  ui.toggle.addEventListener('click', function () {
    if (finished()) { go(current + 1); return; }
    if (phase().kind === 'count') { finishCount(); return; }
    if (engine.running) { stop(); render(true); } else start();
  });
  /** A phase of reps at the patient's own pace ends with a tap; what follows starts counting at once. */
  function finishCount() {
    unlockAudio();
    engine.running = true;
    engine.started = true;
    clearInterval(engine.interval);
    engine.interval = setInterval(tick, TICK_MS);
    keepAwake();
    advance(Date.now());
  }
  ui.skipRest.addEventListener('click', function () { if (engine.running) advance(Date.now()); });
  ui.back.addEventListener('click', function () { go(current - 1); });
  ui.skip.addEventListener('click', function () { go(current + 1); });

  // --- steps ------------------------------------------------------------------------------

  function go(index) {
    index = Math.max(0, Math.min(index, finishIndex));
    stop();
    current = index;
    steps.forEach(function (el, n) { el.hidden = n !== index; });
    if (index >= 1 && index <= exerciseCount) {
      steps[index].querySelector('.pa-timer-slot').appendChild(timer);
      timer.hidden = false;
      load(data.items[index - 1]);
    } else {
      timer.hidden = true;
    }
    ui.progress.value = index;
    ui.progress.hidden = false;
    window.scrollTo(0, 0);
    var heading = steps[index].querySelector('h1, h2');
    if (heading) {
      heading.setAttribute('tabindex', '-1');
      heading.focus({ preventScroll: true });
    }
  }

  // --- saving -----------------------------------------------------------------------------

  var saving = false;
  var save = $('save');

  function showResult(outcome) {
    var result = $('result');
    var title = $('result-h');
    var text = $('result-text');
    result.classList.remove('is-waiting', 'is-failed');
    if (outcome === 'sent') {
      title.textContent = 'Saved. Well done!';
      text.textContent = 'Your practitioner can see how it went.';
    } else if (outcome === 'queued') {
      result.classList.add('is-waiting');
      title.textContent = 'Saved on this phone';
      text.textContent = 'Saved on this phone, will sync when you are back online. You do not need to do anything.';
    } else {
      result.classList.add('is-failed');
      title.textContent = 'Not saved yet';
      text.textContent = (outcome && outcome.failed ? outcome.failed + ' ' : '') + 'It is kept on this phone: you can try again from Today.';
    }
    steps.forEach(function (el, n) { el.hidden = n !== resultIndex; });
    current = resultIndex;
    ui.progress.value = ui.progress.max;
    window.scrollTo(0, 0);
    result.focus({ preventScroll: true });
  }

  // One id for this routine's completion, kept across taps on Done: a second tap after a
  // failure is a retry, and the server answers it with the row it may already have stored
  // (so what was changed in between is kept only if the first send never arrived).
  var clientId = null;

  form.addEventListener('submit', function (event) {
    event.preventDefault();
    if (saving) return;
    saving = true;
    save.disabled = true;
    save.textContent = 'Saving…';
    var fields = new FormData(form);
    var now = new Date();
    clientId = clientId || window.HWOutbox.uuid();
    var body = {
      client_id: clientId,
      assignment_id: data.id,
      date: HW.localDate(HW.timeZone, now),
      completed_at: now.toISOString(),
      note: String(fields.get('note') || '').trim()
    };
    if (slotTime) body.time = slotTime;
    ['pain_before', 'pain_after'].forEach(function (name) {
      var value = fields.get(name);
      if (value !== null && value !== '') body[name] = Number(value);
    });
    if (fields.get('difficulty')) body.difficulty = fields.get('difficulty');
    var meta = { assignment_id: data.id, routine: data.name, date: body.date, time: slotTime || null, local_time: HW.localTime(HW.timeZone, now) };
    HW.record(body, meta).then(showResult, function () {
      // No IndexedDB on this phone (a private window): send it directly instead.
      return HW.fetch('/api/me/completions', {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
      }, 15000).then(function (r) {
        if (r.status === 200 || r.status === 201) return showResult('sent');
        if (r.status === 401) return HW.signedOut();
        throw new Error('status ' + r.status);
      })['catch'](function () {
        saving = false;
        save.disabled = false;
        save.textContent = 'Done';
        // One message, made anew each time so that a screen reader announces every failure.
        var old = $('save-error');
        if (old) old.remove();
        var err = document.createElement('p');
        err.id = 'save-error';
        err.className = 'pa-error';
        err.setAttribute('role', 'alert');
        err.textContent = 'This could not be saved. Please check your connection and tap Done again.';
        save.insertAdjacentElement('beforebegin', err);
      });
    });
  });

  // --- start ------------------------------------------------------------------------------

  var begin = $('begin');
  begin.hidden = false;
  begin.addEventListener('click', function () { go(1); });
  form.classList.add('is-live');
  go(0);
  // The intro's heading need not steal focus on arrival.
  document.activeElement.blur();
  window.HWPlayer = { go: go, engine: engine };
})();
