-- Sessions: "sign out everywhere" and an absolute lifetime for a refresh-token family
-- (see the Postgres migration of the same name).
ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;

ALTER TABLE refresh_tokens ADD COLUMN family_expires_at TEXT NOT NULL DEFAULT '';
UPDATE refresh_tokens SET family_expires_at = expires_at;

CREATE INDEX refresh_tokens_user_live_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_revoked_idx ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
