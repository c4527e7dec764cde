//! A stale-while-revalidate cache on moka: fresh for `ttl`, then served stale while one
//! background refresh runs, until `ttl + stale_for` after it was fetched. Concurrent misses
//! share one fetch (moka's `try_get_with`); failed fetches are never stored, and a value that
//! is only partly known is fresh only for the retry pause, so it is refreshed soon.

use moka::future::Cache;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How an answer was found; also the `x-llmgate-cache` header and the metrics label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    Hit,
    Stale,
    Miss,
}

impl Freshness {
    /// In discriminant order, for per-result handles.
    pub const ALL: [Self; 3] = [Self::Hit, Self::Stale, Self::Miss];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::Stale => "stale",
            Self::Miss => "miss",
        }
    }
}

/// A fetch failure; some mean the cached value must go at once rather than stay served.
pub trait Failure {
    /// The upstream refused the credential: keep serving nothing to it.
    fn revokes(&self) -> bool {
        false
    }
}

/// A value the cache can hold: its size counts against the cache's budget, and an incomplete
/// one (say, a list missing an unreachable relay's models) is served, but refreshed once the
/// retry pause is over rather than after `ttl`.
pub trait Cacheable {
    /// Approximate bytes held.
    fn weight(&self) -> u32;

    fn complete(&self) -> bool {
        true
    }
}

pub struct Stamped<V> {
    pub value: V,
    fetched: Instant,
    refreshing: AtomicBool,
}

pub struct Swr<K, V> {
    cache: Cache<K, Arc<Stamped<V>>>,
    ttl: Duration,
    /// Pause after a failed background refresh before the next one may start.
    retry_after: Duration,
}

impl<K, V> Swr<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Cacheable + Send + Sync + 'static,
{
    /// A cache of at most `max_bytes` (by the values' weights).
    pub fn new(ttl: Duration, stale_for: Duration, max_bytes: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, v: &Arc<Stamped<V>>| v.value.weight())
                .time_to_live(ttl + stale_for)
                .build(),
            ttl,
            retry_after: ttl.min(Duration::from_secs(5)),
        }
    }

    /// The value for `key`: cached, stale (starting a background refresh), or fetched now by
    /// one caller while the others wait for it.
    pub async fn get<F, Fut, E>(
        &self,
        key: K,
        fetch: F,
    ) -> Result<(Arc<Stamped<V>>, Freshness), Arc<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Failure + Send + Sync + 'static,
    {
        if let Some(entry) = self.cache.get(&key).await {
            if entry.fetched.elapsed() < self.ttl {
                return Ok((entry, Freshness::Hit));
            }
            if !entry.refreshing.swap(true, Ordering::AcqRel) {
                self.refresh_in_background(key, entry.clone(), fetch());
            }
            return Ok((entry, Freshness::Stale));
        }
        let fresh = self.freshness();
        // Boxed: moka's loading future is ~13 KB, and inline it would grow every request's
        // future (hits included) by that much; only misses pay for the allocation.
        let entry = Box::pin(self.cache.try_get_with(key, async move {
            fetch().await.map(|v| Stamped::new(v, fresh))
        }))
        .await?;
        Ok((entry, Freshness::Miss))
    }

    /// Drops `key` and fetches it again (an administrator's `?refresh=true`).
    pub async fn reload<Fut, E>(&self, key: K, fetch: Fut) -> Result<Arc<Stamped<V>>, Arc<E>>
    where
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Failure + Send + Sync + 'static,
    {
        self.cache.invalidate(&key).await;
        let fresh = self.freshness();
        Box::pin(self.cache.try_get_with(key, async move {
            fetch.await.map(|v| Stamped::new(v, fresh))
        }))
        .await
    }

    /// How long new values stay fresh: (complete, incomplete).
    fn freshness(&self) -> (Duration, Duration) {
        (self.ttl, self.retry_after)
    }

    pub fn purge(&self) {
        self.cache.invalidate_all();
    }

    fn refresh_in_background<Fut, E>(&self, key: K, old: Arc<Stamped<V>>, fetch: Fut)
    where
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        E: Failure + Send + Sync + 'static,
    {
        let (cache, fresh) = (self.cache.clone(), self.freshness());
        let retry_after = self.retry_after;
        tokio::spawn(async move {
            match fetch.await {
                Ok(v) => cache.insert(key, Stamped::new(v, fresh)).await,
                Err(e) if e.revokes() => cache.invalidate(&key).await,
                Err(_) => {
                    // The stale value stays; the next refresh waits a little, so a dead
                    // upstream sees one attempt per pause, not one per request.
                    tokio::time::sleep(retry_after).await;
                    old.refreshing.store(false, Ordering::Release);
                }
            }
        });
    }
}

impl<V: Cacheable> Stamped<V> {
    /// Stamped so that an incomplete value turns stale after `fresh.1` instead of `fresh.0`.
    fn new(value: V, fresh: (Duration, Duration)) -> Arc<Self> {
        let now = Instant::now();
        let fetched = if value.complete() {
            now
        } else {
            now.checked_sub(fresh.0.saturating_sub(fresh.1))
                .unwrap_or(now)
        };
        Arc::new(Self {
            value,
            fetched,
            refreshing: AtomicBool::new(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Debug)]
    struct Down;
    impl Failure for Down {}
    impl Cacheable for u32 {
        fn weight(&self) -> u32 {
            4
        }

        fn complete(&self) -> bool {
            *self != 99
        }
    }

    #[tokio::test(start_paused = true)]
    async fn hit_stale_refresh_and_expiry() {
        let swr: Swr<u8, u32> = Swr::new(Duration::from_secs(10), Duration::from_secs(60), 1000);
        let calls = Arc::new(AtomicUsize::new(0));
        let fetch = |ok: bool| {
            let calls = calls.clone();
            move || async move {
                let n = calls.fetch_add(1, Ordering::SeqCst) as u32;
                if ok {
                    Ok(n)
                } else {
                    Err(Down)
                }
            }
        };
        let (v, f) = swr.get(1, fetch(true)).await.unwrap();
        assert_eq!((v.value, f), (0, Freshness::Miss));
        let (v, f) = swr.get(1, fetch(true)).await.unwrap();
        assert_eq!((v.value, f), (0, Freshness::Hit));
        tokio::time::advance(Duration::from_secs(11)).await;
        // Stale: the old value at once, one refresh behind it even when it fails.
        let (v, f) = swr.get(1, fetch(false)).await.unwrap();
        assert_eq!((v.value, f), (0, Freshness::Stale));
        let (_, f) = swr.get(1, fetch(false)).await.unwrap();
        assert_eq!(f, Freshness::Stale);
        tokio::task::yield_now().await;
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Errors are not stored: once the retry pause is over, a refresh succeeds.
        tokio::time::advance(Duration::from_secs(6)).await;
        tokio::task::yield_now().await;
        let (_, f) = swr.get(1, fetch(true)).await.unwrap();
        assert_eq!(f, Freshness::Stale);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let (v, f) = swr.get(1, fetch(true)).await.unwrap();
        assert_eq!((v.value, f), (2, Freshness::Hit));
    }

    #[tokio::test]
    async fn failed_miss_is_not_cached() {
        let swr: Swr<u8, u32> = Swr::new(Duration::from_secs(10), Duration::from_secs(60), 1000);
        assert!(swr.get(1, || async { Err::<u32, _>(Down) }).await.is_err());
        let (v, f) = swr.get(1, || async { Ok::<_, Down>(7) }).await.unwrap();
        assert_eq!((v.value, f), (7, Freshness::Miss));
    }

    #[tokio::test(start_paused = true)]
    async fn incomplete_values_are_refreshed_after_the_retry_pause() {
        let swr: Swr<u8, u32> = Swr::new(Duration::from_secs(60), Duration::from_secs(60), 1000);
        let (v, f) = swr.get(1, || async { Ok::<_, Down>(99) }).await.unwrap();
        assert_eq!((v.value, f), (99, Freshness::Miss));
        let (_, f) = swr.get(1, || async { Ok::<_, Down>(5) }).await.unwrap();
        assert_eq!(f, Freshness::Hit);
        tokio::time::advance(Duration::from_secs(6)).await;
        let (v, f) = swr.get(1, || async { Ok::<_, Down>(5) }).await.unwrap();
        assert_eq!((v.value, f), (99, Freshness::Stale));
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let (v, f) = swr.get(1, || async { Ok::<_, Down>(6) }).await.unwrap();
        assert_eq!((v.value, f), (5, Freshness::Hit));
    }
}
