//! The `cluster` mode end to end, briefly, so it cannot rot: the bench binary against the `confab`
//! binary built beside it (`cargo test --workspace` builds both), on the test PostgreSQL
//! (`CONFAB_TEST_POSTGRES_URL`) and a private `nats-server` the bench starts itself.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

/// `CONFAB_BIN`, or the `confab` binary in the bench's own target folder.
fn confab_bin() -> PathBuf {
    let bin = std::env::var_os("CONFAB_BIN").map(PathBuf::from).unwrap_or_else(|| {
        let bench = PathBuf::from(env!("CARGO_BIN_EXE_confab-bench"));
        bench.with_file_name(format!("confab{}", std::env::consts::EXE_SUFFIX))
    });
    assert!(bin.exists(), "{} is missing: build it first (cargo build -p confab) or set CONFAB_BIN", bin.display());
    bin
}

#[test]
fn a_short_cluster_run_reports_three_nodes_against_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cluster.json");
    let run = Command::new(env!("CARGO_BIN_EXE_confab-bench"))
        .args(["cluster", "--clients", "6", "--senders", "3", "--users", "3", "--warmup", "0.3", "--duration", "1"])
        .arg("--confab-bin")
        .arg(confab_bin())
        .arg("--out")
        .arg(&out)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let printed = format!("{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "confab-bench cluster failed:\n{printed}");
    assert!(printed.contains("3 nodes vs 1 node"), "{printed}");

    let report: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(report["columns"], serde_json::json!(["1 node", "3 nodes"]));
    let (one, three) = (&report["floor"], &report["confab"]);
    assert_eq!((one["nodes"].as_u64(), three["nodes"].as_u64()), (Some(1), Some(3)));
    for side in [one, three] {
        assert!(side["received"].as_u64().unwrap() > 0, "nothing delivered: {side}");
        assert_eq!(side["loss"], 0, "every message reaches every viewer on every node: {side}");
        assert_eq!(side["disconnected"], 0, "{side}");
    }
    assert_eq!(one["cross_node_latency"]["count"], 0, "one node has nothing cross-node");
    // Senders 0, 1, 2 are on nodes 0, 1, 2 and every viewer sees every message: two thirds cross.
    let (cross, all) =
        (three["cross_node_latency"]["count"].as_u64().unwrap(), three["latency"]["count"].as_u64().unwrap());
    assert_eq!(cross * 3, all * 2, "cross-node deliveries {cross} of {all}");
    let p99 = report["metrics"].as_array().unwrap().iter().find(|m| m["name"] == "cross-node latency p99").unwrap();
    assert!(p99["ratio"].as_f64().unwrap() > 0.0, "{p99}");
}
