-- Every message written maintains every index on `messages`. Replies and pinned messages are a
-- small part of all messages, so their indexes now hold only those rows: a plain message no longer
-- touches them (the reads that use them name the same conditions).
DROP INDEX messages_by_reply;
CREATE INDEX messages_by_reply ON messages (reply_to) WHERE reply_to IS NOT NULL;
DROP INDEX messages_pinned;
CREATE INDEX messages_pinned ON messages (channel_id, thread_id, seq) WHERE pinned = TRUE;
