//! Resume tokens (v2): a successful password login gets an opaque token; presenting it later instead of the
//! password logs the same user in without argon2, so thousands of clients reconnecting after a node loss
//! get back in quickly. Only a SHA-256 hash is stored; logout revokes the token; it expires after
//! [`crate::store::TOKEN_TTL`].

use argon2::password_hash::rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};

use super::{Context, Failure};
use crate::model::UserId;

/// A new token for `user`'s `device`, saved as a hash; `None` (and a warning) if storage refuses, in which
/// case the login goes on without one.
pub fn issue(ctx: &Context, user: UserId, device: &str) -> Option<String> {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match ctx.store.save_token(user, device, &digest(&token)) {
        Ok(()) => Some(token),
        Err(e) => {
            tracing::warn!(user, error = %e, "could not save a resume token");
            None
        }
    }
}

/// Whether `presented` is the current token of `user`'s `device`.
pub fn matches(
    ctx: &Context,
    user: UserId,
    device: &str,
    presented: &str,
) -> Result<bool, Failure> {
    let stored = ctx.store.token_hash(user, device)?;
    Ok(stored.is_some_and(|hash| constant_time_eq(&hash, &digest(presented))))
}

fn digest(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Compares without stopping at the first difference, so timing does not reveal how much matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"ab"));
    }
}
