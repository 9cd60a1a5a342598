//! A private S3-compatible server for the attachment tests: `moto_server` (PyPI `moto[server]`,
//! installed by `.ci/run`) on a free port of 127.0.0.1, one for the whole test binary, started by
//! the first test that asks and gone when the binary exits.
//!
//! Moto checks nothing by default; here it runs with `INITIAL_NO_AUTH_ACTION_COUNT`, so after the
//! setup (an IAM user, its policy, its access key and the bucket) every request must carry a
//! valid SigV4 signature of that user: the tests exercise Confab's signing, not just its requests.
//! Each server gets its own key prefix in the shared bucket.

use std::{
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use confab::config::Config;
use serde_json::Value;
use tokio::sync::OnceCell;

const BUCKET: &str = "confab-tests";
/// The unsigned requests of the setup: CreateUser, PutUserPolicy, CreateAccessKey, CreateBucket.
const SETUP_REQUESTS: u32 = 4;

/// The running server and the credentials it accepts.
pub struct Moto {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The watchdog shell and its stdin: when this process ends, however it ends, the pipe closes
    /// and the shell kills moto.
    _watchdog: (Child, ChildStdin),
}

static MOTO: OnceCell<Moto> = OnceCell::const_new();

/// The test binary's moto server, started on first use. A missing `moto_server` fails the test:
/// the S3 half of the attachment suite is part of the suite, not an option.
pub async fn moto() -> &'static Moto {
    MOTO.get_or_init(start).await
}

async fn start() -> Moto {
    match Command::new("moto_server").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => {}
        Err(e) => panic!(
            "moto_server is required for the S3 attachment tests ({e}); install it with \
             `pip install 'moto[server]'` (the version .ci/run pins)"
        ),
    }
    let port = crate::support::free_port();
    // Background jobs of a non-interactive shell read /dev/null, hence the explicit fd 3.
    let script = "exec 3<&0; moto_server -H 127.0.0.1 -p \"$0\" </dev/null >/dev/null 2>&1 & m=$!; \
                  (read _ <&3; kill $m) & wait $m";
    let mut child = Command::new("sh")
        .args(["-c", script, &port.to_string()])
        .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_REQUESTS.to_string())
        .stdin(Stdio::piped())
        .spawn()
        .expect("start moto_server");
    let stdin = child.stdin.take().expect("watchdog stdin");
    let endpoint = format!("http://127.0.0.1:{port}");
    // A connection counts as no request, so readiness costs none of the setup's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("moto_server exited at start: {status}");
        }
        assert!(tokio::time::Instant::now() < deadline, "moto_server did not listen on {endpoint} within 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (access_key_id, secret_access_key) = setup(&endpoint).await;
    Moto { endpoint, access_key_id, secret_access_key, _watchdog: (child, stdin) }
}

/// The unsigned setup requests, while moto still lets them through: a user allowed `s3:*`, its
/// access key, and the bucket.
async fn setup(endpoint: &str) -> (String, String) {
    let http = reqwest::Client::new();
    // Moto picks the service from the credential scope; the signature is not checked yet.
    let iam = "AWS4-HMAC-SHA256 Credential=setup/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0";
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let calls: [&[(&str, &str)]; 3] = [
        &[("Action", "CreateUser"), ("UserName", "confab")],
        &[("Action", "PutUserPolicy"), ("UserName", "confab"), ("PolicyName", "s3"), ("PolicyDocument", policy)],
        &[("Action", "CreateAccessKey"), ("UserName", "confab")],
    ];
    let mut last = String::new();
    for form in calls {
        let r = http
            .post(endpoint)
            .header("authorization", iam)
            .form(&[form, &[("Version", "2010-05-08")]].concat())
            .send()
            .await
            .expect("moto IAM request");
        assert!(r.status().is_success(), "moto IAM {form:?}: {}", r.status());
        last = r.text().await.expect("moto IAM answer");
    }
    let field = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = last.find(&open).unwrap_or_else(|| panic!("no {name} in {last}")) + open.len();
        let end = last[start..].find(&close).expect("closing tag") + start;
        last[start..end].to_owned()
    };
    let keys = (field("AccessKeyId"), field("SecretAccessKey"));
    let r = http.put(format!("{endpoint}/{BUCKET}")).send().await.expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    keys
}

impl Moto {
    /// Points `config`'s attachments at this server, under a prefix of their own.
    pub fn configure(&self, config: &mut Config) {
        let s3 = &mut config.attachments.s3;
        s3.endpoint = self.endpoint.clone();
        s3.bucket = BUCKET.to_owned();
        s3.access_key_id = self.access_key_id.clone();
        s3.secret_access_key = self.secret_access_key.clone();
        s3.path_style = true;
        s3.prefix = format!("t-{}/", uuid::Uuid::new_v4().simple());
        config.attachments.storage = confab::attachments::storage::StorageKind::S3;
    }

    /// The keys of the live objects under `prefix`, read from moto's own state (its unsigned
    /// `/moto-api/data.json`), not through Confab's client.
    pub async fn objects(&self, prefix: &str) -> Vec<String> {
        let url = format!("{}/moto-api/data.json", self.endpoint);
        let state: Value = reqwest::get(&url).await.expect("moto state").json().await.expect("moto state JSON");
        let keys = state["s3"]["FakeKey"].as_array().cloned().unwrap_or_default();
        keys.iter()
            .filter(|k| k["bucket_name"] == BUCKET && k["disposed"] == false)
            .filter_map(|k| k["name"].as_str().filter(|n| n.starts_with(prefix)).map(str::to_owned))
            .collect()
    }
}
