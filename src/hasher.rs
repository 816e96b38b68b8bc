//! Password hashing with argon2id on a small pool of its own.
//!
//! Each hash takes `memory_kib` of memory (19 MiB with OWASP's parameters) and tens of milliseconds of CPU.
//! Running it on connection threads would let 1,000 simultaneous logins take 19 GiB; here at most one hash
//! per pool thread runs at a time (the pool is sized to the cores), and the rest wait in rayon's queue as
//! small closures. This is CPU-bound work, which is what rayon is for.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;

/// The argon2id cost parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HashCost {
    /// Memory per hash in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes over the memory (OWASP: 2).
    pub iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: 19_456,
            iterations: 2,
        }
    }
}

/// Hashes and verifies passwords off the connection threads.
pub struct Hasher {
    pool: rayon::ThreadPool,
    argon2: Argon2<'static>,
}

impl Hasher {
    /// A hasher with `threads` workers (0: one per core).
    pub fn new(cost: &HashCost, threads: usize) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| anyhow::anyhow!("invalid argon2 cost: {e}"))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("argon2-{i}"))
            .panic_handler(|_| tracing::error!("a password hash panicked"))
            .build()?;
        Ok(Hasher {
            pool,
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) for `password`, with a fresh random salt.
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        self.run(move |argon2| {
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
    }

    /// Whether `password` matches the stored PHC string (its own parameters are used).
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        self.run(move |argon2| {
            PasswordHash::new(phc)
                .map(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
    }

    /// Runs `job` on the pool and waits for it.
    fn run<T: Send>(&self, job: impl FnOnce(&Argon2<'static>) -> T + Send) -> T {
        let argon2 = &self.argon2;
        self.pool.install(|| job(argon2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_then_verify() {
        let cost = HashCost {
            memory_kib: 64,
            iterations: 1,
        };
        let hasher = Hasher::new(&cost, 1).unwrap();
        let phc = hasher.hash("pässword").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(hasher.verify("pässword", &phc));
        assert!(!hasher.verify("password", &phc));
        assert!(!hasher.verify("x", "not a hash"));
        assert_ne!(phc, hasher.hash("pässword").unwrap(), "salts differ");
    }
}
