-- A keyed MAC (HMAC-SM3 with a key from the key ring) over each account's security-relevant
-- columns (等保 DJ-DI-2): an account changed directly in the database — a password hash swapped,
-- an administrator role or an end date edited — fails its check and cannot be used. NULL until the
-- server seals existing rows at start.
ALTER TABLE users ADD COLUMN row_mac TEXT;
