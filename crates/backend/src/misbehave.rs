//! Deliberate protocol violations, for testing frontends.
//!
//! Each stream has one [`Misbehave`] setting, changeable at run time with
//! [`Backend::set_misbehave`](crate::Backend::set_misbehave) (also before the stream is bound). The
//! stream's worker is woken and applies it at once. Exactly what ends up on the ring:
//!
//! | Setting | Effect |
//! | --- | --- |
//! | `None` | normal operation |
//! | `Late(d)` | every response is published `d` of *stream clock* time after its request was taken (the ring is served one request at a time, so later requests wait too; CUR_POS keeps flowing) |
//! | `ErrorStatus(s)` | every request is answered with status `s` and an empty payload, without being executed |
//! | `Stall` | the next request is taken (`req_cons` advances) and never answered; nothing after it is served. Changing the setting away from `Stall` executes and answers it |
//! | `BogusRspProd` | one-shot: `rsp_prod` is set to the real value + 1000 and the request channel is notified; then the setting returns to `None` (a later response writes the real value again) |
//! | `BogusInProd` | one-shot: `in_prod` is set to the real value + 1000 and the event channel is notified; then `None` (the next event continues from the real value) |
//! | `WrongId` | every response carries `request id ^ 0x8000` |
//! | `PositionOffset(n)` | every CUR_POS reports the real position + `n` (saturating at 0 and `u64::MAX`): negative goes backwards, positive runs past what was written |
//! | `EventFlood(n)` | one-shot: `n` CUR_POS events (current position, ids consecutive) are pushed at once, notifying after each; events that find the page full are dropped and still consume an id, as libxenbe; then `None` |
//!
//! Crashing and restarting are whole-backend operations: [`Backend::crash`](crate::Backend::crash)
//! and starting a new [`Backend`](crate::Backend) on the same store.

use std::time::Duration;

/// The misbehaviour of one stream (see the module docs for the exact bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Misbehave {
    /// Behave.
    #[default]
    None,
    /// Delay every response by this much stream-clock time.
    Late(Duration),
    /// Answer every request with this status, without executing it.
    ErrorStatus(i32),
    /// Take the next request and never answer it (until the setting changes).
    Stall,
    /// One-shot: publish `rsp_prod` 1000 ahead of the truth.
    BogusRspProd,
    /// One-shot: publish `in_prod` 1000 ahead of the truth.
    BogusInProd,
    /// Answer with `id ^ 0x8000`.
    WrongId,
    /// Add this to every CUR_POS position.
    PositionOffset(i64),
    /// One-shot: push this many CUR_POS events at once.
    EventFlood(u32),
}

/// How far a bogus `rsp_prod`/`in_prod` is ahead of the real value.
pub const BOGUS_INDEX_AHEAD: u32 = 1000;

/// The id a `WrongId` response carries for request `id`.
pub const fn wrong_id(id: u16) -> u16 {
    id ^ 0x8000
}

/// The position a CUR_POS reports for real position `pos` under `PositionOffset(offset)`.
pub fn offset_position(pos: u64, offset: i64) -> u64 {
    if offset >= 0 {
        pos.saturating_add(offset.unsigned_abs())
    } else {
        pos.saturating_sub(offset.unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(wrong_id(5), 0x8005);
        assert_eq!(wrong_id(0x8005), 5);
        assert_eq!(offset_position(100, -30), 70);
        assert_eq!(offset_position(10, -30), 0);
        assert_eq!(offset_position(10, 5), 15);
        assert_eq!(offset_position(u64::MAX, 5), u64::MAX);
        assert_eq!(offset_position(10, i64::MIN), 0);
        assert_eq!(Misbehave::default(), Misbehave::None);
    }
}
