-- An account may be given an end date (temporary staff, contractors, secondments): from then on
-- it cannot log in and its sessions end. NULL: no end date.
ALTER TABLE users ADD COLUMN expires_at BIGINT;
