/* Today: keep the list of slots right when the page comes from the offline cache. Slots
 * with a completion waiting in the outbox show as done (saved on this phone); refused
 * ones are listed with "Try again". When the cached page is from an earlier day, today's
 * slots are rebuilt from the cached today JSON or from the cached assignments. */
(function () {
  'use strict';

  var HW = window.HW;
  var list = document.getElementById('slots');
  if (!HW || !list) return;
  var Outbox = window.HWOutbox;
  var template = document.getElementById('slot-template').content.firstElementChild;
  var model = JSON.parse(document.getElementById('today-data').textContent);
  var items = [];
  var shown = signature(model.slots.map(function (s) { return Object.assign({ pending: false }, s); }));
  var DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

  function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }
  function minutes(hhmm) { return Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5)); }
  function signature(slots) {
    return JSON.stringify(slots.map(function (s) { return [s.assignment_id, s.time, s.routine.name, s.done, s.pending]; }));
  }

  /** Mark the slot each waiting completion will fill, as the server would: its own time if open, else the nearest. */
  function overlay(slots) {
    var result = slots.map(function (s) { return Object.assign({ pending: false }, s); });
    items.forEach(function (item) {
      var meta = item.meta || {};
      if (item.status !== 'pending' || meta.date !== model.date) return;
      var open = result.filter(function (s) { return s.assignment_id === meta.assignment_id && !s.done && !s.pending; });
      if (!open.length) return;
      var target = open.filter(function (s) { return s.time === meta.time; })[0];
      if (!target) {
        var at = minutes(meta.local_time || '12:00');
        target = open.slice().sort(function (a, b) {
          return Math.abs(minutes(a.time) - at) - Math.abs(minutes(b.time) - at) || minutes(a.time) - minutes(b.time);
        })[0];
      }
      target.pending = true;
    });
    return result;
  }

  function slotNode(slot, isNext) {
    var li = template.cloneNode(true);
    li.dataset.assignment = slot.assignment_id;
    li.dataset.time = slot.time;
    li.querySelector('.pa-slot-time').textContent = slot.time;
    li.querySelector('.pa-slot-name').textContent = slot.routine.name;
    li.querySelector('.pa-slot-meta').textContent =
      plural(slot.routine.items, 'exercise') + ' · about ' + slot.routine.estimated_minutes + ' min';
    var state = li.querySelector('.pa-slot-state');
    var start = li.querySelector('[data-start]');
    if (slot.done || slot.pending) {
      li.classList.add(slot.pending ? 'is-pending' : 'is-done');
      state.textContent = slot.pending ? 'Saved on this phone, will sync' : 'Done';
      if (!slot.pending) {
        var check = document.createElement('span');
        check.className = 'pa-check';
        check.setAttribute('aria-hidden', 'true');
        state.prepend(check);
      }
      start.remove();
    } else {
      state.textContent = isNext ? 'Up next' : 'Not yet';
      start.href = '/app/routine/' + slot.assignment_id + '?time=' + encodeURIComponent(slot.time);
      start.className = isNext ? 'button primary pa-big' : 'button pa-secondary';
      start.querySelector('.visually-hidden').textContent = ' ' + slot.routine.name + ' at ' + slot.time;
    }
    li.classList.toggle('is-next', isNext);
    return li;
  }

  function render() {
    var slots = overlay(model.slots);
    var sig = signature(slots);
    if (sig !== shown) {
      shown = sig;
      var next = -1;
      slots.some(function (s, n) { if (!s.done && !s.pending) { next = n; return true; } return false; });
      var fragment = document.createDocumentFragment();
      slots.forEach(function (s, n) { fragment.appendChild(slotNode(s, n === next)); });
      list.replaceChildren(fragment);
      document.getElementById('all-done').hidden = !slots.length || next >= 0;
      document.getElementById('no-slots').hidden = slots.length > 0;
    }
    var streak = document.getElementById('streak');
    streak.hidden = !model.streak_days;
    document.getElementById('streak-text').textContent = plural(model.streak_days, 'day') + ' in a row';
    renderUnsent();
  }

  function renderUnsent() {
    var failed = items.filter(function (i) { return i.status === 'failed'; });
    var section = document.getElementById('unsent');
    var ul = document.getElementById('unsent-list');
    section.hidden = !failed.length;
    ul.replaceChildren.apply(ul, failed.map(function (item) {
      var li = document.createElement('li');
      li.className = 'pa-card';
      var name = document.createElement('p');
      var strong = document.createElement('strong');
      strong.textContent = (item.meta && item.meta.routine) || 'A routine';
      name.append(strong, ' on ' + ((item.meta && item.meta.date) || ''));
      var why = document.createElement('p');
      why.textContent = 'The server did not accept it: ' + (item.error || 'unknown reason');
      var actions = document.createElement('div');
      actions.className = 'pa-actions';
      var again = document.createElement('button');
      again.type = 'button';
      again.className = 'primary';
      again.textContent = 'Try again';
      again.addEventListener('click', function () { Outbox.retry(item.client_id).then(HW.flush); });
      var drop = document.createElement('button');
      drop.type = 'button';
      drop.className = 'pa-secondary';
      drop.textContent = 'Remove';
      drop.addEventListener('click', function () { Outbox.discard(item.client_id); });
      actions.append(again, drop);
      li.append(name, why, actions);
      return li;
    }));
  }

  /** Today's slots from cached assignments, for a page cached on an earlier day. */
  function fromAssignments(date, ids) {
    var weekday = DAYS[new Date(date + 'T12:00:00Z').getUTCDay()];
    return Promise.all(ids.map(function (id) {
      return caches.match('/api/me/assignments/' + id).then(function (r) { return r ? r.json() : null; })['catch'](function () { return null; });
    })).then(function (found) {
      var slots = [];
      found.forEach(function (a) {
        if (!a || !a.active || a.start_date > date || (a.end_date && a.end_date < date) || a.days.indexOf(weekday) < 0) return;
        a.times.forEach(function (t) {
          slots.push({
            assignment_id: a.id, time: t, done: false,
            routine: { name: a.routine.name, items: a.routine.items.length, estimated_minutes: a.routine.estimated_minutes }
          });
        });
      });
      slots.sort(function (x, y) { return x.time < y.time ? -1 : x.time > y.time ? 1 : x.assignment_id - y.assignment_id; });
      return { date: date, slots: slots, streak_days: model.streak_days, notes: model.notes };
    });
  }

  function assignmentIds() {
    var ids = {};
    model.slots.forEach(function (s) { ids[s.assignment_id] = true; });
    (model.notes || []).forEach(function (n) { ids[n.assignment_id] = true; });
    document.querySelectorAll('[data-start]').forEach(function (a) {
      var m = /\/app\/routine\/(\d+)/.exec(a.getAttribute('href') || '');
      if (m) ids[m[1]] = true;
    });
    return Object.keys(ids);
  }

  function refresh() {
    var today = HW.localDate(HW.timeZone);
    return HW.fetch('/api/me/today', { headers: { Accept: 'application/json' } }).then(function (r) {
      if (r.status === 401) { HW.signedOut(); return null; }
      return r.ok ? r.json() : null;
    })['catch'](function () { return null; }).then(function (fresh) {
      if (fresh && fresh.date === model.date) {
        // Two cached copies of one day may differ in age; a slot done in either is done.
        fresh.slots.forEach(function (slot) {
          slot.done = slot.done || model.slots.some(function (old) {
            return old.done && old.assignment_id === slot.assignment_id && old.time === slot.time;
          });
        });
      }
      if (fresh && fresh.date >= model.date) model = fresh;
      if (model.date < today && window.caches) {
        return fromAssignments(today, assignmentIds()).then(function (rebuilt) { model = rebuilt; });
      }
    });
  }

  HW.onOutboxChange(function (all) {
    var sent = items.filter(function (old) {
      return old.status === 'pending' && !all.some(function (now) { return now.client_id === old.client_id; });
    });
    if (!sent.length) { items = all; render(); return; }
    // It reached the server: keep it shown as done until the server says which slot it filled.
    items = all.concat(sent);
    render();
    refresh().then(function () { items = all; render(); });
  });
  Outbox.all().then(function (all) { items = all; render(); })['catch'](function () {});
  refresh().then(render);

  // Everything the player needs offline, for each routine on this page.
  var warm = ['/api/me/today', '/app/history', '/app/settings'];
  assignmentIds().forEach(function (id) { warm.push('/app/routine/' + id, '/api/me/assignments/' + id); });
  HW.warm(warm);
})();
