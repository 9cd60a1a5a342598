//! A small S3 client: PUT, ranged GET and DELETE of one object, signed with SigV4
//! ([`super::sigv4`]) and sent with the `reqwest` (rustls) client Confab already has. Works with
//! AWS S3 (virtual-host addressing) and with MinIO, moto, Ceph, Garage… (path-style addressing).
//!
//! Why not the `object_store` crate: `docs/attachments-storage.md`.

use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::sigv4::{self, EMPTY_SHA256, Signer};

/// The `attachments.s3` section of the configuration.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// `http(s)://host[:port]` of the service; empty means AWS's `https://s3.<region>.amazonaws.com`.
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    /// Never logged; `confab config` shows it redacted.
    pub secret_access_key: String,
    /// `<endpoint>/<bucket>/<key>` (MinIO, moto and most self-hosted stores) instead of
    /// `<bucket>.<endpoint host>/<key>` (AWS's default).
    pub path_style: bool,
    /// Prepended to every object key (e.g. `confab/`), so that one bucket can hold other things.
    pub prefix: String,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            region: "us-east-1".to_owned(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            path_style: false,
            prefix: String::new(),
        }
    }
}

/// Debug without the secret: configurations end up in logs and panic messages.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl S3Config {
    /// The first key an S3 store cannot work without, or one whose value is unusable, with why.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let missing = "is required when attachments.storage = \"s3\"";
        if self.bucket.trim().is_empty() {
            return Some(("attachments.s3.bucket", missing));
        }
        if self.region.trim().is_empty() {
            return Some(("attachments.s3.region", missing));
        }
        if self.access_key_id.is_empty() {
            return Some(("attachments.s3.access_key_id", missing));
        }
        if self.secret_access_key.is_empty() {
            return Some(("attachments.s3.secret_access_key", missing));
        }
        if !self.endpoint.is_empty() && self.base_url().is_none() {
            return Some(("attachments.s3.endpoint", "must be an http:// or https:// URL without a path"));
        }
        if self.prefix.starts_with('/') || self.prefix.split('/').any(|s| s == "..") {
            return Some(("attachments.s3.prefix", "must not start with `/` or contain `..`"));
        }
        None
    }

    /// Where requests go (without the bucket): the endpoint, or AWS's regional one.
    fn base_url(&self) -> Option<reqwest::Url> {
        let raw = if self.endpoint.is_empty() {
            format!("https://s3.{}.amazonaws.com", self.region)
        } else {
            self.endpoint.trim_end_matches('/').to_owned()
        };
        let url = reqwest::Url::parse(&raw).ok()?;
        let ok = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some()
            && url.path() == "/"
            && url.query().is_none();
        ok.then_some(url)
    }
}

/// One bucket of an S3-compatible store.
pub struct Bucket {
    config: S3Config,
    /// Scheme, host and port of every request; the bucket is in the host (virtual-host style)
    /// or the first path segment (path style).
    origin: String,
    /// The `host` header as signed: what reqwest sends for `origin` (the port only when not the
    /// scheme's default).
    host: String,
    /// `/<bucket>` in path style, empty otherwise.
    bucket_path: String,
    http: reqwest::Client,
}

/// No secret in debug output.
impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({}{}/{})", self.origin, self.bucket_path, self.config.prefix)
    }
}

impl Bucket {
    /// A client for `config`, which must have passed [`S3Config::problem`].
    pub fn new(config: &S3Config) -> std::io::Result<Bucket> {
        let invalid = || std::io::Error::other("attachments.s3.endpoint is not a usable URL");
        let base = config.base_url().ok_or_else(invalid)?;
        let host_name = base.host_str().ok_or_else(invalid)?;
        let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
        let (host, bucket_path) = if config.path_style {
            (format!("{host_name}{port}"), format!("/{}", sigv4::encode_path(&config.bucket)))
        } else {
            (format!("{}.{host_name}{port}", config.bucket), String::new())
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // Per read, not per request: a long video streams to a slow client for minutes.
            .read_timeout(Duration::from_secs(60))
            // S3 redirects a request to the bucket's region; following it would re-send a
            // signature made for the wrong host. The error names the problem instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Bucket { config: config.clone(), origin: format!("{}://{host}", base.scheme()), host, bucket_path, http })
    }

    /// Stores `bytes` under `key` (replacing what was there). S3 checks the body against the
    /// signed SHA-256, so a corrupted upload is refused rather than stored.
    pub async fn put(&self, key: &str, bytes: Bytes) -> std::io::Result<()> {
        let digest = sigv4::sha256_hex(&bytes);
        let response = self.send(reqwest::Method::PUT, key, &digest, None, bytes).await?;
        expect_success("PUT", key, response).await.map(drop)
    }

    /// The object under `key`, whole or bytes `first..=last`, as a response whose body is still
    /// to be read; `None` when there is no such object.
    pub async fn get(&self, key: &str, range: Option<(u64, u64)>) -> std::io::Result<Option<reqwest::Response>> {
        let range = range.map(|(a, b)| format!("bytes={a}-{b}"));
        let response = self.send(reqwest::Method::GET, key, EMPTY_SHA256, range.as_deref(), Bytes::new()).await?;
        let response = match expect_success("GET", key, response).await {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            other => other?,
        };
        let expected = if range.is_some() { reqwest::StatusCode::PARTIAL_CONTENT } else { reqwest::StatusCode::OK };
        if response.status() != expected {
            let why = format!("S3 GET {key}: answered {} to a request for {}", response.status(), expected);
            return Err(std::io::Error::other(why));
        }
        Ok(Some(response))
    }

    /// Removes the object under `key`; S3 answers success for a missing one too.
    pub async fn delete(&self, key: &str) -> std::io::Result<()> {
        let response = self.send(reqwest::Method::DELETE, key, EMPTY_SHA256, None, Bytes::new()).await?;
        expect_success("DELETE", key, response).await.map(drop)
    }

    async fn send(
        &self,
        method: reqwest::Method,
        key: &str,
        payload_sha256: &str,
        range: Option<&str>,
        body: Bytes,
    ) -> std::io::Result<reqwest::Response> {
        let path = format!("{}/{}", self.bucket_path, sigv4::encode_path(&format!("{}{key}", self.config.prefix)));
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let amz_date = sigv4::amz_date(now);
        let mut headers =
            vec![("host", self.host.as_str()), ("x-amz-content-sha256", payload_sha256), ("x-amz-date", &amz_date)];
        if let Some(r) = range {
            headers.push(("range", r));
        }
        let signer = Signer {
            access_key_id: &self.config.access_key_id,
            secret_access_key: &self.config.secret_access_key,
            region: &self.config.region,
        };
        let authorization = signer.authorization(&sigv4::Request {
            method: method.as_str(),
            path: &path,
            headers: &headers,
            payload_sha256,
            amz_date: &amz_date,
        });
        let mut request =
            self.http.request(method, format!("{}{path}", self.origin)).header("authorization", authorization);
        for (name, value) in headers.iter().filter(|(name, _)| *name != "host") {
            request = request.header(*name, *value);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        request.send().await.map_err(|e| std::io::Error::other(format!("S3 request for {key}: {e}")))
    }
}

/// `response` if it is a 2xx; otherwise an error naming the operation, the status and S3's error
/// code (e.g. `SignatureDoesNotMatch`, `NoSuchBucket`), never the credentials. Only `NoSuchKey`
/// is of kind `NotFound`: a missing bucket is a misconfiguration, not a missing file.
async fn expect_success(op: &str, key: &str, response: reqwest::Response) -> std::io::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    let code = body.split_once("<Code>").and_then(|(_, rest)| rest.split_once("</Code>")).map_or("", |(code, _)| code);
    let kind = if code == "NoSuchKey" { std::io::ErrorKind::NotFound } else { std::io::ErrorKind::Other };
    Err(std::io::Error::new(kind, format!("S3 {op} {key}: HTTP {status} {code}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> S3Config {
        S3Config {
            bucket: "b".into(),
            access_key_id: "id".into(),
            secret_access_key: "hunter2".into(),
            ..S3Config::default()
        }
    }

    #[test]
    fn problems_name_their_key() {
        assert_eq!(config().problem(), None);
        type Change = fn(&mut S3Config);
        let cases: [(Change, &str); 6] = [
            (|c| c.bucket.clear(), "attachments.s3.bucket"),
            (|c| c.region.clear(), "attachments.s3.region"),
            (|c| c.access_key_id.clear(), "attachments.s3.access_key_id"),
            (|c| c.secret_access_key.clear(), "attachments.s3.secret_access_key"),
            (|c| c.endpoint = "ftp://x".into(), "attachments.s3.endpoint"),
            (|c| c.prefix = "/x".into(), "attachments.s3.prefix"),
        ];
        for (change, key) in cases {
            let mut c = config();
            change(&mut c);
            assert_eq!(c.problem().map(|(k, _)| k), Some(key));
        }
    }

    #[test]
    fn addressing_styles() {
        let aws = Bucket::new(&config()).unwrap();
        assert_eq!(
            (aws.origin.as_str(), aws.host.as_str(), aws.bucket_path.as_str()),
            ("https://b.s3.us-east-1.amazonaws.com", "b.s3.us-east-1.amazonaws.com", "")
        );
        let local =
            Bucket::new(&S3Config { endpoint: "http://127.0.0.1:9000/".into(), path_style: true, ..config() }).unwrap();
        assert_eq!(
            (local.origin.as_str(), local.host.as_str(), local.bucket_path.as_str()),
            ("http://127.0.0.1:9000", "127.0.0.1:9000", "/b")
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = config();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Bucket::new(&c).unwrap()).contains("hunter2"));
    }
}
