-- The audit log (PROTOCOL §5.8): written in the same transaction as the change it describes.
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    action TEXT NOT NULL,
    category TEXT NOT NULL,
    actor_id TEXT,
    actor_name TEXT NOT NULL,
    target_id TEXT,
    target_name TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX audit_by_time ON audit_log (created_at);
CREATE INDEX audit_by_category ON audit_log (category, created_at);
