-- Patient app: device sessions and completions.

CREATE TABLE devices (
    id           INTEGER PRIMARY KEY,
    patient_id   INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    token_hash   BLOB NOT NULL UNIQUE,
    label        TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    revoked_at   TEXT
);
CREATE INDEX devices_patient ON devices (patient_id);

ALTER TABLE patients ADD COLUMN joined_at TEXT;

-- client_id is the phone's idempotency key: a retried upload never makes a second row.
-- slot_time is the scheduled slot the completion fills (NULL: an extra, unscheduled one).
CREATE TABLE completions (
    id            INTEGER PRIMARY KEY,
    patient_id    INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    assignment_id INTEGER NOT NULL REFERENCES assignments(id) ON DELETE CASCADE,
    client_id     TEXT NOT NULL,
    local_date    TEXT NOT NULL,
    slot_time     TEXT,
    completed_at  TEXT NOT NULL,
    pain_before   INTEGER CHECK (pain_before BETWEEN 0 AND 10),
    pain_after    INTEGER CHECK (pain_after BETWEEN 0 AND 10),
    difficulty    TEXT CHECK (difficulty IN ('easy', 'ok', 'hard')),
    note          TEXT NOT NULL DEFAULT '',
    created_at    TEXT NOT NULL,
    UNIQUE (patient_id, client_id)
);
CREATE INDEX completions_assignment_date ON completions (assignment_id, local_date);
CREATE INDEX completions_patient_date ON completions (patient_id, local_date);
