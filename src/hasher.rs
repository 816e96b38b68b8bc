//! Password hashing with argon2id on a small pool of its own.
//!
//! Each hash takes `memory_kib` of memory (19 MiB with OWASP's parameters) and tens of milliseconds of CPU.
//! Running it on connection threads would let 1,000 simultaneous logins take 19 GiB; here at most one hash
//! per pool thread runs at a time (the pool is sized to the cores), and the rest wait in rayon's queue as
//! small closures. This is CPU-bound work, which is what rayon is for.
//!
//! Each pool thread keeps its argon2 memory between hashes. Allocating 19 MiB per hash, as the argon2
//! crate's `PasswordHasher` does, left freed blocks cached in glibc's arenas: a 500-user login storm held
//! 450 MiB afterwards. Reused, the memory is the pool's threads × `memory_kib`, for good.

use std::cell::RefCell;
use std::sync::OnceLock;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, Salt, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

thread_local! {
    /// This pool thread's argon2 memory, grown to the largest cost it has hashed with.
    static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Hashes and verifies passwords off the connection threads.
pub struct Hasher {
    pool: rayon::ThreadPool,
    params: Params,
    /// A hash of nothing anyone knows, at this node's cost, made on first use: see [`Hasher::waste`].
    decoy: OnceLock<String>,
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
            params,
            decoy: OnceLock::new(),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=…`) for `password`, with a fresh random salt.
    pub fn hash(&self, password: &str) -> anyhow::Result<String> {
        let salt = SaltString::generate(&mut OsRng);
        let params = self.params.clone();
        self.pool.install(move || {
            let phc_params = ParamsString::try_from(&params)?;
            let output = compute(
                password.as_bytes(),
                Algorithm::Argon2id,
                Version::V0x13,
                params,
                salt.as_salt(),
            )?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: phc_params,
                salt: Some(salt.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
    }

    /// Spends what verifying `password` against a real account would, and fails: a login for an id that
    /// does not exist must take as long as a wrong password, or timing tells which ids exist.
    pub fn waste(&self, password: &str) -> bool {
        let decoy = self.decoy.get_or_init(|| {
            // A fresh random salt string doubles as a secret nobody knows.
            let secret = SaltString::generate(&mut OsRng);
            self.hash(secret.as_str()).unwrap_or_default()
        });
        let _ = self.verify(password, decoy);
        false
    }

    /// Whether `password` matches the stored PHC string (its own parameters are used).
    pub fn verify(&self, password: &str, phc: &str) -> bool {
        self.pool
            .install(move || verify(password.as_bytes(), phc))
            .unwrap_or(false)
    }
}

/// Checks `password` against a PHC string with the parameters it names; the comparison of the outputs
/// takes constant time (`Output`'s equality).
fn verify(password: &[u8], phc: &str) -> anyhow::Result<bool> {
    let parsed = PasswordHash::new(phc).map_err(anyhow::Error::msg)?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return Ok(false);
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(anyhow::Error::msg)?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).map_err(anyhow::Error::msg)?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(anyhow::Error::msg)?;
    let computed = compute(password, algorithm, version, params, salt)?;
    Ok(computed == expected)
}

/// One argon2 computation in this thread's reused memory.
fn compute(
    password: &[u8],
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Salt<'_>,
) -> anyhow::Result<Output> {
    let mut salt_bytes = [0u8; Salt::MAX_LENGTH];
    let salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(anyhow::Error::msg)?;
    let blocks = params.block_count();
    let output_len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
    let argon2 = Argon2::new(algorithm, version, params);
    MEMORY.with_borrow_mut(|memory| {
        if memory.len() < blocks {
            memory.resize(blocks, Block::default());
        }
        Output::init_with(output_len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut memory[..blocks])
                .map_err(|_| argon2::password_hash::Error::Crypto)
        })
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-thread hasher at this cost.
    fn hasher(memory_kib: u32, iterations: u32) -> Hasher {
        Hasher::new(
            &HashCost {
                memory_kib,
                iterations,
            },
            1,
        )
        .unwrap()
    }

    #[test]
    fn hash_then_verify() {
        let hasher = hasher(64, 1);
        let phc = hasher.hash("pässword").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(hasher.verify("pässword", &phc));
        assert!(!hasher.verify("password", &phc));
        assert!(!hasher.verify("x", "not a hash"));
        assert_ne!(phc, hasher.hash("pässword").unwrap(), "salts differ");
    }

    #[test]
    fn wasting_never_succeeds() {
        let hasher = hasher(64, 1);
        assert!(!hasher.waste(""));
        assert!(!hasher.waste("pässword"));
        assert!(
            hasher
                .decoy
                .get()
                .is_some_and(|d| d.starts_with("$argon2id$"))
        );
    }

    /// Hashes stored before the memory was reused (the argon2 crate's own path) still verify, and ours
    /// verify with the crate's verifier: the PHC strings are the same format.
    #[test]
    fn interoperates_with_the_argon2_crate() {
        use argon2::password_hash::{PasswordHasher, PasswordVerifier};
        let hasher = hasher(256, 2);
        let params = Params::new(256, 2, 1, None).unwrap();
        let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut OsRng);
        let stored = theirs.hash_password(b"secret", &salt).unwrap().to_string();
        assert!(hasher.verify("secret", &stored));
        assert!(!hasher.verify("Secret", &stored));
        let ours = hasher.hash("secret").unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(theirs.verify_password(b"secret", &parsed).is_ok());
        assert!(theirs.verify_password(b"secret!", &parsed).is_err());
    }

    /// A hash made with a larger cost than the thread last used grows its memory, and a smaller one after
    /// it still comes out right (the reused memory's old contents do not matter).
    #[test]
    fn reused_memory_gives_the_same_results_at_any_cost() {
        let small = hasher(64, 1);
        let large = hasher(512, 3);
        let a = small.hash("one").unwrap();
        let b = large.hash("two").unwrap();
        assert!(large.verify("one", &a) && small.verify("two", &b));
        assert!(small.verify("one", &a) && large.verify("two", &b));
        assert!(!small.verify("two", &a));
    }
}
