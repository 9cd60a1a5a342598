//! Password hashing on a bounded worker pool (PROTOCOL §8.3, DESIGN §3).
//!
//! Argon2id costs tens of milliseconds of CPU and 19 MiB of memory. Running it on the event loop
//! would stall every socket, so it runs on dedicated threads, one per core, with a queue of bounded
//! length: a login flood gets "Server busy" instead of starving everyone else. Each worker owns one
//! 19 MiB block buffer for its whole life — allocating it per hash made the allocator keep hundreds
//! of MiB of freed buffers around after a burst of logins (measured with confab-bench).

use std::sync::{Arc, Mutex, mpsc};

use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use tokio::sync::oneshot;

use crate::auth::tokens::random_bytes;

/// The pool's queue is full: answer "Server busy, try again".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// Outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Correct; `rehash` carries a new Argon2id hash when the stored one was an imported bcrypt hash.
    Ok { rehash: Option<String> },
    /// Wrong password, unknown account (checked against a dummy hash), or an unusable stored hash.
    Wrong,
}

/// OWASP's Argon2id parameters: m = 19 MiB, t = 2, p = 1.
const M_COST: u32 = 19 * 1024;
const T_COST: u32 = 2;
const P_COST: u32 = 1;
const OUTPUT_LEN: usize = 32;

enum Job {
    Hash(String, oneshot::Sender<String>),
    Verify(String, Option<String>, oneshot::Sender<Verified>),
}

/// The bounded hashing pool. Cheap to clone; its threads end when the last clone is dropped.
#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::SyncSender<Job>,
    /// `auth.hash_queue = 0` admits nothing: every password operation answers busy.
    closed: bool,
}

/// One worker's reusable Argon2 memory.
struct Worker {
    memory: Vec<Block>,
    dummy: String,
}

fn params(m: u32, t: u32, p: u32) -> Option<Params> {
    Params::new(m, t, p, Some(OUTPUT_LEN)).ok()
}

impl Worker {
    fn new() -> Worker {
        let mut w = Worker { memory: vec![Block::new(); M_COST as usize], dummy: String::new() };
        w.dummy = w.hash("dummy password for timing equalisation");
        w
    }

    /// Argon2id with the standard parameters, as a PHC string.
    fn hash(&mut self, password: &str) -> String {
        let salt = random_bytes::<16>();
        let mut out = [0u8; OUTPUT_LEN];
        let Some(p) = params(M_COST, T_COST, P_COST) else { unreachable!("constant parameters are valid") };
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        if let Err(e) = argon.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, &mut self.memory) {
            unreachable!("argon2 with fixed parameters cannot fail: {e}");
        }
        format!(
            "$argon2id$v=19$m={M_COST},t={T_COST},p={P_COST}${}${}",
            STANDARD_NO_PAD.encode(salt),
            STANDARD_NO_PAD.encode(out)
        )
    }

    /// Checks `password` against a PHC Argon2 string, reusing the buffer when the memory cost fits.
    fn verify_argon2(&mut self, password: &str, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        let algorithm = match parsed.algorithm.as_str() {
            "argon2id" => Algorithm::Argon2id,
            "argon2i" => Algorithm::Argon2i,
            "argon2d" => Algorithm::Argon2d,
            _ => return false,
        };
        let get = |k: &str| parsed.params.get_decimal(k);
        let (Some(m), Some(t), Some(p)) = (get("m"), get("t"), get("p")) else { return false };
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
        let mut salt_buf = [0u8; 64];
        let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
        let Ok(p) = Params::new(m, t, p, Some(expected.len())) else { return false };
        let argon = Argon2::new(algorithm, Version::V0x13, p.clone());
        let mut out = vec![0u8; expected.len()];
        let blocks = p.block_count();
        let done = if blocks <= self.memory.len() {
            argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut self.memory[..blocks])
        } else {
            argon.hash_password_into(password.as_bytes(), salt, &mut out)
        };
        done.is_ok() && constant_time_eq_bytes(&out, expected.as_bytes())
    }

    fn verify(&mut self, password: &str, stored: Option<&str>) -> Verified {
        match stored {
            Some(h) if h.starts_with("$2") => match bcrypt::verify(password, h) {
                Ok(true) => Verified::Ok { rehash: Some(self.hash(password)) },
                _ => Verified::Wrong,
            },
            Some(h) if self.verify_argon2(password, h) => Verified::Ok { rehash: None },
            Some(_) => Verified::Wrong,
            None => {
                let dummy = std::mem::take(&mut self.dummy);
                let _ = self.verify_argon2(password, &dummy);
                self.dummy = dummy;
                Verified::Wrong
            }
        }
    }
}

fn constant_time_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

impl Hasher {
    /// A pool with `workers` threads (0 = one per core) and `queue_max` waiting jobs.
    pub fn new(workers: usize, queue_max: usize) -> Hasher {
        let workers = if workers == 0 { std::thread::available_parallelism().map_or(1, usize::from) } else { workers };
        let (jobs, queue) = mpsc::sync_channel::<Job>(queue_max);
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..workers {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                let mut worker = Worker::new();
                loop {
                    let job = match queue.lock() {
                        Ok(q) => q.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(Job::Hash(pw, reply)) => {
                            let _ = reply.send(worker.hash(&pw));
                        }
                        Ok(Job::Verify(pw, stored, reply)) => {
                            let _ = reply.send(worker.verify(&pw, stored.as_deref()));
                        }
                        Err(_) => return,
                    }
                }
            });
            if let Err(e) = spawned {
                tracing::error!("cannot start a password hashing thread: {e}");
            }
        }
        Hasher { jobs, closed: queue_max == 0 }
    }

    fn submit(&self, job: Job) -> Result<(), Busy> {
        if self.closed {
            return Err(Busy);
        }
        self.jobs.try_send(job).map_err(|_| Busy)
    }

    /// Hashes a new password with Argon2id.
    pub async fn hash(&self, password: String) -> Result<String, Busy> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Hash(password, tx))?;
        rx.await.map_err(|_| Busy)
    }

    /// Checks `password` against `stored`; with `None` it checks a dummy hash so timing is the same.
    pub async fn verify(&self, password: String, stored: Option<String>) -> Result<Verified, Busy> {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Verify(password, stored, tx))?;
        rx.await.map_err(|_| Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_and_verify() {
        let h = Hasher::new(1, 4);
        let stored = h.hash("correct horse".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(
            h.verify("correct horse".into(), Some(stored.clone())).await.unwrap(),
            Verified::Ok { rehash: None }
        );
        assert_eq!(h.verify("wrong".into(), Some(stored)).await.unwrap(), Verified::Wrong);
        assert_eq!(h.verify("x".into(), None).await.unwrap(), Verified::Wrong);
    }

    #[tokio::test]
    async fn bcrypt_is_verified_then_rehashed() {
        // The seed's fixture hash. The seed calls it the hash of "password"; it is in fact the
        // well-known hash of "secret" (FastAPI docs), so "password" must fail.
        let legacy = "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW".to_owned();
        let h = Hasher::new(1, 4);
        assert_eq!(h.verify("password".into(), Some(legacy.clone())).await.unwrap(), Verified::Wrong);
        match h.verify("secret".into(), Some(legacy.clone())).await.unwrap() {
            Verified::Ok { rehash: Some(new) } => assert!(new.starts_with("$argon2id$")),
            other => panic!("expected a rehash, got {other:?}"),
        }
        assert_eq!(h.verify("nope".into(), Some(legacy)).await.unwrap(), Verified::Wrong);
    }

    #[tokio::test]
    async fn phc_strings_interoperate_with_the_argon2_crate() {
        use argon2::{PasswordHasher, PasswordVerifier, password_hash::SaltString};
        let h = Hasher::new(1, 4);
        let ours = h.hash("correct horse".into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(Argon2::default().verify_password(b"correct horse", &parsed).is_ok());
        assert!(Argon2::default().verify_password(b"wrong horse", &parsed).is_err());
        // A hash made elsewhere with other parameters still verifies here.
        let salt = SaltString::encode_b64(&[7u8; 16]).unwrap();
        let other = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(8 * 1024, 1, 1, None).unwrap());
        let theirs = other.hash_password(b"hunter22", &salt).unwrap().to_string();
        assert_eq!(h.verify("hunter22".into(), Some(theirs.clone())).await.unwrap(), Verified::Ok { rehash: None });
        assert_eq!(h.verify("hunter23".into(), Some(theirs)).await.unwrap(), Verified::Wrong);
    }

    #[tokio::test]
    async fn full_queue_is_busy() {
        let h = Hasher::new(1, 0);
        assert_eq!(h.hash("whatever1".into()).await, Err(Busy));
    }
}
