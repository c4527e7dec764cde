//! GCRA (generic cell rate algorithm) over several windows at once, decided atomically: a
//! request is admitted only if every window has room, and only then is any window charged.
//!
//! Each window keeps one number per key, its theoretical arrival time (TAT): the moment the
//! window would be full again. Charging `cost` units moves it `cost × interval` later; the
//! request fits while the TAT stays within `capacity × interval` of now. `admit.lua` is the
//! same algorithm for Redis; the two must stay in step.

/// Request windows first, then token windows; `Plan` and the Redis script use this order.
pub const SLOTS: usize = 4;
pub const REQ_MINUTE: usize = 0;
pub const REQ_DAY: usize = 1;
pub const TOK_MINUTE: usize = 2;
pub const TOK_DAY: usize = 3;

pub const MINUTE_NS: u64 = 60_000_000_000;
pub const DAY_NS: u64 = 24 * 60 * MINUTE_NS;

/// Up to `capacity` units at once; one unit comes back every `interval` nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub interval: u64,
    pub capacity: u64,
}

impl Window {
    /// `amount` per `period`, with `extra` units of burst on top; `None` when `amount` is 0
    /// (no limit).
    pub fn per(period_ns: u64, amount: u64, extra: u64) -> Option<Self> {
        (amount > 0).then(|| Self {
            interval: (period_ns / amount).max(1),
            capacity: amount.saturating_add(extra),
        })
    }

    fn span(&self) -> u64 {
        self.interval.saturating_mul(self.capacity)
    }
}

/// What one request asks of its key: a window and a cost per slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub slots: [Option<(Window, u64)>; SLOTS],
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.slots.iter().all(Option::is_none)
    }
}

/// A window's state after a decision, for the `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status {
    pub remaining: u64,
    /// Nanoseconds until the window is full again.
    pub reset: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Denial {
    pub slot: usize,
    /// Nanoseconds until the request would fit; `None` when it never can (cost > capacity).
    pub retry_after: Option<u64>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub denied: Option<Denial>,
    pub status: [Option<Status>; SLOTS],
}

/// Decides `plan` at `now` against `tats`, which change only when every window admits.
pub fn decide(tats: &mut [u64; SLOTS], plan: &Plan, now: u64) -> Outcome {
    let mut out = Outcome::default();
    let mut next = *tats;
    for (i, slot) in plan.slots.iter().enumerate() {
        let Some((w, cost)) = *slot else { continue };
        let base = tats[i].max(now);
        let span = w.span();
        let ahead = (base - now).saturating_add(cost.saturating_mul(w.interval));
        if out.denied.is_none() {
            if cost > w.capacity {
                out.denied = Some(Denial {
                    slot: i,
                    retry_after: None,
                });
            } else if ahead > span {
                out.denied = Some(Denial {
                    slot: i,
                    retry_after: Some(ahead - span),
                });
            }
        }
        next[i] = now.saturating_add(ahead);
        out.status[i] = Some(Status {
            remaining: span.saturating_sub(ahead) / w.interval,
            reset: ahead,
        });
    }
    if out.denied.is_none() {
        *tats = next;
        return out;
    }
    // Refused: report the windows as they stand, uncharged.
    for (i, slot) in plan.slots.iter().enumerate() {
        if let Some((w, _)) = slot {
            let ahead = tats[i].max(now) - now;
            out.status[i] = Some(Status {
                remaining: w.span().saturating_sub(ahead) / w.interval,
                reset: ahead,
            });
        }
    }
    out
}

/// Moves a window by `delta` units after the fact (a token reservation replaced by real
/// usage): positive charges more, negative gives back. Giving back never goes below empty.
pub fn adjust(tat: &mut u64, w: Window, delta: i64, now: u64) {
    let units = delta.unsigned_abs().min(w.capacity);
    let by = units.saturating_mul(w.interval);
    if delta >= 0 {
        *tat = (*tat).max(now).saturating_add(by);
    } else {
        *tat = tat.saturating_sub(by);
    }
}

/// True when the window holds nothing of the key any more: forgetting it changes nothing.
pub fn idle(tats: &[u64; SLOTS], now: u64) -> bool {
    tats.iter().all(|&t| t <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(w: Window, cost: u64) -> Plan {
        let mut p = Plan::default();
        p.slots[REQ_MINUTE] = Some((w, cost));
        p
    }

    #[test]
    fn burst_zero_admits_exactly_the_rate_at_once() {
        let w = Window::per(MINUTE_NS, 100, 0).unwrap();
        let mut tats = [0; SLOTS];
        let now = 1_000;
        let admitted = (0..1000)
            .filter(|_| decide(&mut tats, &plan(w, 1), now).denied.is_none())
            .count();
        assert_eq!(admitted, 100);
        let out = decide(&mut tats, &plan(w, 1), now);
        let d = out.denied.unwrap();
        assert_eq!(
            d.retry_after,
            Some(w.interval),
            "one interval until the next fits"
        );
        assert_eq!(out.status[0].unwrap().remaining, 0);
        assert_eq!(out.status[0].unwrap().reset, MINUTE_NS);
        // One interval later exactly one more fits.
        let later = now + w.interval;
        assert!(decide(&mut tats, &plan(w, 1), later).denied.is_none());
        assert!(decide(&mut tats, &plan(w, 1), later).denied.is_some());
    }

    #[test]
    fn burst_adds_capacity_and_remaining_counts_down() {
        let w = Window::per(MINUTE_NS, 10, 5).unwrap();
        let mut tats = [0; SLOTS];
        let first = decide(&mut tats, &plan(w, 1), 0);
        assert_eq!(first.status[0].unwrap().remaining, 14);
        for _ in 0..14 {
            assert!(decide(&mut tats, &plan(w, 1), 0).denied.is_none());
        }
        assert!(decide(&mut tats, &plan(w, 1), 0).denied.is_some());
    }

    #[test]
    fn refused_requests_charge_nothing_in_any_window() {
        let minute = Window::per(MINUTE_NS, 1000, 0).unwrap();
        let day = Window::per(DAY_NS, 2, 0).unwrap();
        let mut p = plan(minute, 1);
        p.slots[REQ_DAY] = Some((day, 1));
        let mut tats = [0; SLOTS];
        assert!(decide(&mut tats, &p, 0).denied.is_none());
        assert!(decide(&mut tats, &p, 0).denied.is_none());
        let before = tats;
        let out = decide(&mut tats, &p, 0);
        assert_eq!(out.denied.unwrap().slot, REQ_DAY);
        assert_eq!(tats, before);
    }

    #[test]
    fn cost_above_capacity_never_fits_and_adjust_gives_back() {
        let w = Window::per(MINUTE_NS, 100, 0).unwrap();
        let mut tats = [0; SLOTS];
        let mut p = Plan::default();
        p.slots[TOK_MINUTE] = Some((w, 101));
        assert_eq!(decide(&mut tats, &p, 0).denied.unwrap().retry_after, None);
        p.slots[TOK_MINUTE] = Some((w, 100));
        assert!(decide(&mut tats, &p, 0).denied.is_none());
        adjust(&mut tats[TOK_MINUTE], w, -60, 0);
        p.slots[TOK_MINUTE] = Some((w, 60));
        assert!(decide(&mut tats, &p, 0).denied.is_none());
        adjust(&mut tats[TOK_MINUTE], w, -1000, 0);
        assert!(idle(&tats, 0));
    }
}
