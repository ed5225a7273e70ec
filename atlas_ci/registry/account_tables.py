"""The tables of :mod:`.accounts`: users and organizations (one namespace table), memberships,
tokens and public artifacts; and the web pages' sign-in sessions. Apart from that module so the
schema steps of :mod:`.storage` can name them without importing the accounts (which import the
storage).
"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS namespaces (
    name    TEXT PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('user', 'organization')),
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS memberships (
    organization TEXT NOT NULL REFERENCES namespaces (name),
    username     TEXT NOT NULL REFERENCES namespaces (name),
    role         TEXT NOT NULL CHECK (role IN ('read', 'write')),
    PRIMARY KEY (organization, username)
);
CREATE INDEX IF NOT EXISTS memberships_by_user ON memberships (username);
CREATE TABLE IF NOT EXISTS tokens (
    id        TEXT PRIMARY KEY,
    username  TEXT NOT NULL REFERENCES namespaces (name),
    hash      TEXT NOT NULL UNIQUE,
    read_only INTEGER NOT NULL CHECK (read_only IN (0, 1)),
    created   TEXT NOT NULL,
    expires   TEXT,
    last_used TEXT
);
CREATE INDEX IF NOT EXISTS tokens_by_user ON tokens (username);
CREATE TABLE IF NOT EXISTS public_artifacts (
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    since     TEXT NOT NULL,
    PRIMARY KEY (namespace, name)
)
"""

SESSIONS = """
CREATE TABLE IF NOT EXISTS sessions (
    hash       TEXT PRIMARY KEY,
    token_id   TEXT REFERENCES tokens (id) ON DELETE CASCADE,
    admin_hash TEXT,
    created    TEXT NOT NULL,
    expires    TEXT NOT NULL,
    CHECK ((token_id IS NULL) <> (admin_hash IS NULL))
);
CREATE INDEX IF NOT EXISTS sessions_by_token ON sessions (token_id);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires)
"""
"""A signed-in browser (:mod:`.sessions`): the sha256 of its cookie, never the cookie, and the
token it signed in with: a user token's id, or the sha256 of an administrator token (those live
in the server's flags, not in this database)."""
