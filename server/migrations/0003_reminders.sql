-- Reminders: push subscriptions, the patient's reminder settings, and a durable outbox.

ALTER TABLE patients ADD COLUMN quiet_start TEXT NOT NULL DEFAULT '21:30';
ALTER TABLE patients ADD COLUMN quiet_end TEXT NOT NULL DEFAULT '07:30';
ALTER TABLE patients ADD COLUMN nudges_enabled INTEGER NOT NULL DEFAULT 1;

CREATE TABLE push_subscriptions (
    id                INTEGER PRIMARY KEY,
    patient_id        INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    device_id         INTEGER REFERENCES devices(id) ON DELETE SET NULL,
    endpoint          TEXT NOT NULL UNIQUE,
    p256dh            TEXT NOT NULL,
    auth              TEXT NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    last_attempt_at   TEXT,
    last_status       INTEGER,
    last_delivered_at TEXT
);
CREATE INDEX push_subscriptions_patient ON push_subscriptions (patient_id);

-- The scheduler's cursor per assignment: the next slot (patient-local date and time) not
-- yet put in the outbox, and when it is due in UTC. A tick reads only rows whose
-- next_due_at has come (or that need planning), so its cost follows what is due, not
-- how many patients there are.
ALTER TABLE assignments ADD COLUMN next_slot_date TEXT;
ALTER TABLE assignments ADD COLUMN next_slot_time TEXT;
ALTER TABLE assignments ADD COLUMN next_due_at TEXT;
ALTER TABLE assignments ADD COLUMN needs_plan INTEGER NOT NULL DEFAULT 1;
CREATE INDEX assignments_next_due ON assignments (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX assignments_needs_plan ON assignments (needs_plan) WHERE needs_plan = 1;

-- One row per (assignment, local date, slot, kind): the UNIQUE key is what makes a
-- reminder go out at most once, whatever the number of schedulers or restarts.
CREATE TABLE reminders (
    id            INTEGER PRIMARY KEY,
    assignment_id INTEGER NOT NULL REFERENCES assignments(id) ON DELETE CASCADE,
    patient_id    INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    local_date    TEXT NOT NULL,
    slot_time     TEXT NOT NULL,
    kind          TEXT NOT NULL CHECK (kind IN ('reminder', 'nudge', 'snooze')),
    due_at        TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'pending'
                  CHECK (status IN ('pending', 'sending', 'sent', 'skipped', 'missed', 'failed')),
    detail        TEXT NOT NULL DEFAULT '',
    claimed_by    TEXT,
    claimed_at    TEXT,
    tries         INTEGER NOT NULL DEFAULT 0,
    sent_at       TEXT,
    created_at    TEXT NOT NULL,
    UNIQUE (assignment_id, local_date, slot_time, kind)
);
CREATE INDEX reminders_pending ON reminders (due_at) WHERE status = 'pending';
CREATE INDEX reminders_sending ON reminders (claimed_at) WHERE status = 'sending';
CREATE INDEX reminders_patient ON reminders (patient_id, sent_at);

-- Every delivery attempt, for the practitioner's "last delivered" and for debugging.
CREATE TABLE push_attempts (
    id              INTEGER PRIMARY KEY,
    reminder_id     INTEGER REFERENCES reminders(id) ON DELETE CASCADE,
    subscription_id INTEGER REFERENCES push_subscriptions(id) ON DELETE SET NULL,
    status          INTEGER,
    error           TEXT NOT NULL DEFAULT '',
    tries           INTEGER NOT NULL DEFAULT 1,
    at              TEXT NOT NULL
);
CREATE INDEX push_attempts_reminder ON push_attempts (reminder_id);
