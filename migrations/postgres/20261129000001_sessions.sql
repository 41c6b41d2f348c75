-- Sessions: "sign out everywhere" and an absolute lifetime for a refresh-token family.
--
-- `token_generation` is carried by every access token (`gen`); bumping it makes the
-- user's outstanding access tokens fail at once.
ALTER TABLE users ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;

-- When the family a token belongs to ends, whatever its rotations: a new token never
-- outlives it. Existing families end with their current tokens.
ALTER TABLE refresh_tokens ADD COLUMN family_expires_at timestamptz;
UPDATE refresh_tokens SET family_expires_at = expires_at;
ALTER TABLE refresh_tokens ALTER COLUMN family_expires_at SET NOT NULL;

-- "Sign out everywhere" revokes a user's live tokens; the purge drops dead ones.
CREATE INDEX refresh_tokens_user_live_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_revoked_idx ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
