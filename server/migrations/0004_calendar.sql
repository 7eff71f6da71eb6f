-- Subscribable calendar feeds: calendar apps send no cookies, so the URL carries a token.
-- Only its SHA-256 is kept; a new feed revokes the patient's older ones.

CREATE TABLE calendar_feeds (
    id         INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    token_hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX calendar_feeds_patient ON calendar_feeds (patient_id);
