//! The game-day dashboard: one page served at `/` by the admin listener, compiled into the
//! binary (no CDN, no build step, works offline). It holds no data: it calls the admin API
//! (`/status`, `/events`, `/rules`, `/verdicts`, and `halt`, `resume`, `POST /rules`) with
//! the token it asks for, exactly as `s3chaos ctl` does, so it adds nothing to the proxy's
//! hot path: it reads the counters the workers already keep, once a second.

/// The page (HTML, CSS and JavaScript in one file).
pub const PAGE: &str = include_str!("dashboard.html");
