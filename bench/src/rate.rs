//! `--rate`: at most `rate` requests per second across all clients.
//!
//! A token bucket of capacity one (etcd's tool uses `rate.NewLimiter(r, 1)`): each caller
//! reserves the next free slot `1/rate` after the previous one and sleeps until it. An idle
//! period earns no burst, so the offered load never exceeds the rate, even after a stall.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next_slot: Mutex<Instant>,
}

impl RateLimiter {
    /// `None` for a rate of 0, meaning "no limit", as in etcd's flags.
    pub fn per_second(rate: u64) -> Option<Self> {
        (rate > 0).then(|| Self {
            interval: Duration::from_nanos(1_000_000_000 / rate),
            next_slot: Mutex::new(Instant::now()),
        })
    }

    /// Waits for this caller's slot. The lock is held only to reserve, never across await.
    pub async fn acquire(&self) {
        let now = Instant::now();
        let slot = {
            let mut next = self.next_slot.lock().unwrap_or_else(|e| e.into_inner());
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        if slot > now {
            tokio::time::sleep_until(slot).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_requests_by_the_interval_without_bursting_after_idle() {
        let limiter = RateLimiter::per_second(10).expect("limited");
        let start = Instant::now();
        for _ in 0..5 {
            limiter.acquire().await;
        }
        // Slots at 0, 100, 200, 300, 400 ms.
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        tokio::time::sleep(Duration::from_secs(5)).await;
        let resume = Instant::now();
        limiter.acquire().await;
        limiter.acquire().await;
        assert_eq!(resume.elapsed(), Duration::from_millis(100));
        assert!(RateLimiter::per_second(0).is_none());
    }
}
