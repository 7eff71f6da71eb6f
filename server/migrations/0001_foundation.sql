-- Foundation: practitioners, their library, routines, patients and assignments.
-- Times are UTC ISO 8601 text ending in Z; local dates (YYYY-MM-DD) and times (HH:MM)
-- are the patient's, in patients.timezone.

CREATE TABLE practitioners (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE practitioner_sessions (
    id              INTEGER PRIMARY KEY,
    practitioner_id INTEGER NOT NULL REFERENCES practitioners(id) ON DELETE CASCADE,
    token_hash      BLOB NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    expires_at      TEXT NOT NULL
);

CREATE TABLE api_tokens (
    id              INTEGER PRIMARY KEY,
    practitioner_id INTEGER NOT NULL REFERENCES practitioners(id) ON DELETE CASCADE,
    label           TEXT NOT NULL,
    token_hash      BLOB NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT
);

-- Failed attempts for rate limits, shared by every server process.
CREATE TABLE rate_events (
    key TEXT NOT NULL,
    at  TEXT NOT NULL
);
CREATE INDEX rate_events_key_at ON rate_events (key, at);

-- practitioner_id NULL marks a built-in exercise (slug set), visible to everyone.
CREATE TABLE exercises (
    id              INTEGER PRIMARY KEY,
    practitioner_id INTEGER REFERENCES practitioners(id) ON DELETE CASCADE,
    slug            TEXT UNIQUE,
    name            TEXT NOT NULL,
    summary         TEXT NOT NULL DEFAULT '',
    steps           TEXT NOT NULL DEFAULT '[]',
    safety          TEXT NOT NULL DEFAULT '',
    hold_seconds    INTEGER NOT NULL,
    reps            INTEGER NOT NULL,
    sets            INTEGER NOT NULL,
    sides           TEXT NOT NULL CHECK (sides IN ('none', 'left', 'right', 'both')),
    image           TEXT,
    created_at      TEXT NOT NULL
);
CREATE INDEX exercises_practitioner ON exercises (practitioner_id);

CREATE TABLE routines (
    id              INTEGER PRIMARY KEY,
    practitioner_id INTEGER NOT NULL REFERENCES practitioners(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    notes           TEXT NOT NULL DEFAULT '',
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX routines_practitioner ON routines (practitioner_id);

CREATE TABLE routine_items (
    id           INTEGER PRIMARY KEY,
    routine_id   INTEGER NOT NULL REFERENCES routines(id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    exercise_id  INTEGER NOT NULL REFERENCES exercises(id),
    reps         INTEGER NOT NULL,
    sets         INTEGER NOT NULL,
    hold_seconds INTEGER NOT NULL,
    sides        TEXT NOT NULL CHECK (sides IN ('none', 'left', 'right', 'both')),
    rest_seconds INTEGER NOT NULL,
    notes        TEXT NOT NULL DEFAULT ''
);
CREATE INDEX routine_items_routine ON routine_items (routine_id, position);

CREATE TABLE patients (
    id              INTEGER PRIMARY KEY,
    practitioner_id INTEGER NOT NULL REFERENCES practitioners(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    timezone        TEXT NOT NULL,
    archived        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL
);
CREATE INDEX patients_practitioner ON patients (practitioner_id, archived);

-- The routine is copied into items (JSON, exercise text included) when assigned, so
-- later edits of the routine or its exercises never rewrite what the patient was given.
-- days is a bit mask, Monday = 1 ... Sunday = 64; times a JSON list of "HH:MM", sorted.
CREATE TABLE assignments (
    id                INTEGER PRIMARY KEY,
    patient_id        INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    practitioner_id   INTEGER NOT NULL REFERENCES practitioners(id) ON DELETE CASCADE,
    routine_id        INTEGER REFERENCES routines(id) ON DELETE SET NULL,
    routine_name      TEXT NOT NULL,
    routine_notes     TEXT NOT NULL DEFAULT '',
    items             TEXT NOT NULL,
    item_count        INTEGER NOT NULL,
    estimated_minutes INTEGER NOT NULL,
    start_date        TEXT NOT NULL,
    end_date          TEXT,
    days              INTEGER NOT NULL CHECK (days BETWEEN 1 AND 127),
    times             TEXT NOT NULL,
    session_date      TEXT,
    note              TEXT NOT NULL DEFAULT '',
    created_at        TEXT NOT NULL,
    ended_at          TEXT
);
CREATE INDEX assignments_patient ON assignments (patient_id, ended_at);
CREATE INDEX assignments_practitioner ON assignments (practitioner_id);

CREATE TABLE clinic_sessions (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    date       TEXT NOT NULL,
    note       TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL
);
CREATE INDEX clinic_sessions_patient ON clinic_sessions (patient_id, date);

-- One invite carries a link token and a short code; either redeems it, once.
CREATE TABLE invites (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE,
    code_hash  BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX invites_patient ON invites (patient_id);
