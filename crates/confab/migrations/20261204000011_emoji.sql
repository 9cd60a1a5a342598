-- Custom emoji (PROTOCOL §3.7, §5.8, §6.9). Ids are decimal integers because the official client
-- parses them with parseInt; names are unique case-insensitively. The image (at most 256 KiB) is
-- kept base64-encoded in the row, the same column type on both backends.

CREATE TABLE emojis (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    name_lower TEXT NOT NULL UNIQUE,
    ext TEXT NOT NULL,
    image TEXT NOT NULL,
    created_by TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
