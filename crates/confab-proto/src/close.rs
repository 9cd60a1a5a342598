//! WebSocket close codes (PROTOCOL §1.7). Clients decide whether to reconnect from these numbers.

/// Normal closure, e.g. after `user_leave`.
pub const NORMAL: u16 = 1000;
/// Server shutting down; resumable.
pub const GOING_AWAY: u16 = 1001;
/// Policy violation: bad `?token=`, Origin not allowed, too many connections.
pub const POLICY: u16 = 1008;
/// Inbound frame over the cap.
pub const TOO_BIG: u16 = 1009;
/// Nothing arrived from the peer within the dead-peer timeout; resumable.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// Not authenticated within the auth deadline.
pub const AUTH_TIMEOUT: u16 = 4001;
/// Too many undecodable frames.
pub const DECODE_FLOOD: u16 = 4002;
/// Banned, kicked or deleted.
pub const BANNED: u16 = 4003;
/// Credential revoked (logout, refresh reuse, password change …).
pub const REVOKED: u16 = 4004;
/// Hard rate limit.
pub const HARD_RATE_LIMIT: u16 = 4008;
/// Outbound queue overflow; resumable.
pub const SLOW_CONSUMER: u16 = 4009;
