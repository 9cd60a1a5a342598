//! `community`: what a large community costs. A server with A registered accounts and O of them
//! online is measured for `users_list`, `users_online`, presence fan-out (one more account comes
//! online: until every online connection has its `user_connect`) and a mention of a role every
//! account holds (`@&user`: until every online connection has the message), each beside the same
//! message without the mention. The reference is a small community measured in the same run by
//! the same code on a fresh server, so each figure reads as large ÷ small: how the cost grows.
//! The floor server has no member list, presence or roles, so it takes no part.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use serde_json::json;
use tokio::{sync::mpsc, time::Instant};

use crate::{
    Common,
    client::{self, Ws},
    procfs::{self, CpuMeter},
    stats::{self, Summary},
    target::{Kind, Target},
};

#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct CommunityArgs {
    #[command(flatten)]
    pub common: Common,
    /// Registered accounts of the large community.
    #[arg(long, default_value_t = 10_000)]
    pub accounts: usize,
    /// Of them online (each with one connection).
    #[arg(long, default_value_t = 2000)]
    pub online: usize,
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 20)]
    pub rounds: usize,
}

/// One community size, measured.
#[derive(Debug, Clone, Serialize)]
pub struct Sized {
    pub accounts: usize,
    pub online: usize,
    pub users_list: Summary,
    pub users_list_bytes: usize,
    pub users_online: Summary,
    pub users_online_bytes: usize,
    /// A new account connects → every online connection has its `user_connect`.
    pub presence_fanout: Summary,
    /// `@&user …` sent → every online connection has it.
    pub role_mention: Summary,
    /// The same message without a mention.
    pub plain_message: Summary,
    /// Server CPU seconds for the whole measured part.
    pub server_cpu_s: f64,
    pub rss_kib: u64,
}

pub async fn run(args: CommunityArgs) -> Result<()> {
    if args.online == 0 || args.online >= args.accounts || args.rounds == 0 {
        bail!("need 0 < --online < --accounts and --rounds > 0");
    }
    // The reference: a community a hundredth the size, with the same share online.
    let small_accounts = (args.accounts / 100).max(args.rounds + 10);
    let small_online = (args.online * small_accounts / args.accounts).max(2);
    let small = measure(&args, small_accounts, small_online).await?;
    let large = measure(&args, args.accounts, args.online).await?;
    let rows = [
        ("users_list p50", "ms", small.users_list.p50_ms, large.users_list.p50_ms),
        ("users_list p99", "ms", small.users_list.p99_ms, large.users_list.p99_ms),
        ("users_list reply", "KiB", small.users_list_bytes as f64 / 1024.0, large.users_list_bytes as f64 / 1024.0),
        ("users_online p50", "ms", small.users_online.p50_ms, large.users_online.p50_ms),
        ("users_online p99", "ms", small.users_online.p99_ms, large.users_online.p99_ms),
        ("presence fan-out p50", "ms", small.presence_fanout.p50_ms, large.presence_fanout.p50_ms),
        ("presence fan-out p99", "ms", small.presence_fanout.p99_ms, large.presence_fanout.p99_ms),
        ("role mention to all online p50", "ms", small.role_mention.p50_ms, large.role_mention.p50_ms),
        ("role mention to all online p99", "ms", small.role_mention.p99_ms, large.role_mention.p99_ms),
        ("plain message to all online p50", "ms", small.plain_message.p50_ms, large.plain_message.p50_ms),
        ("server CPU", "s", small.server_cpu_s, large.server_cpu_s),
        ("server RSS", "MiB", small.rss_kib as f64 / 1024.0, large.rss_kib as f64 / 1024.0),
    ];
    println!(
        "\ncommunity: small {}/{} online vs large {}/{} online, {} rounds each",
        small.accounts, small.online, large.accounts, large.online, args.rounds
    );
    println!("{:<34} {:>12} {:>12} {:>9}", "metric", "small", "large", "large÷small");
    for (name, unit, s, l) in &rows {
        println!("{:<34} {:>9.2} {unit:<2} {:>9.2} {unit:<2} {:>9.2}", name, s, l, l / s.max(f64::EPSILON));
    }
    let out = args.common.out.clone().unwrap_or_else(|| "bench-results/community.json".into());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).ok();
    }
    let json = json!({"mode": "community", "params": args, "small": small, "large": large});
    std::fs::write(&out, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// What a reader of one online connection saw.
enum Seen {
    /// `user_connect` of account `bench<N>`.
    Presence(usize),
    /// Bench message number N (see [`round_of_message`]).
    Message(usize),
}

async fn measure(a: &CommunityArgs, accounts: usize, online: usize) -> Result<Sized> {
    let common = Common { users: accounts, ..a.common.clone() };
    Target::start(Kind::Confab, "community", &common).await?.run(async |t| sized(t, a, accounts, online).await).await
}

async fn sized(target: &Target, a: &CommunityArgs, accounts: usize, online: usize) -> Result<Sized> {
    // Connections 0..online stay online; accounts from `online` on come online one per round.
    let conns = target.connect_many(online, client::spread_for(online), 64).await?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let mut conns = conns.into_iter();
    let mut asker = conns.next().context("no connection")?;
    for ws in conns {
        tokio::spawn(read(ws, seen_tx.clone()));
    }
    drop(seen_tx);
    let listeners = online - 1;
    let meter = CpuMeter::start(target.pid())?;

    let (users_list, users_list_bytes) = requests(&mut asker, json!({"cmd": "users_list"}), a.rounds).await?;
    let (users_online, users_online_bytes) = requests(&mut asker, json!({"cmd": "users_online"}), a.rounds).await?;

    let mut presence = Vec::new();
    for round in 0..a.rounds.min(accounts - online) {
        let user = target.user(online + round);
        let t0 = Instant::now();
        let newcomer = client::open_with_token(target.addr(), &user.token, client::source_ip(round, 1)).await?;
        wait_all(&mut seen, listeners, |s| matches!(s, Seen::Presence(n) if *n == online + round)).await?;
        presence.push(t0.elapsed().as_micros() as u64);
        drop(newcomer);
    }
    let mut mention = Vec::new();
    let mut plain = Vec::new();
    for round in 0..a.rounds {
        for (with_mention, samples) in [(true, &mut mention), (false, &mut plain)] {
            let content = format!("{}community {round} {}", if with_mention { "@&user " } else { "" }, with_mention);
            let frame = json!({"cmd": "message_new", "channel": "general", "content": content});
            let t0 = Instant::now();
            client::send_text(&mut asker, frame.to_string()).await?;
            let wanted = round * 2 + usize::from(!with_mention);
            wait_all(&mut seen, listeners, |s| matches!(s, Seen::Message(r) if *r == wanted)).await?;
            samples.push(t0.elapsed().as_micros() as u64);
        }
    }
    let cpu = meter.finish()?;
    Ok(Sized {
        accounts,
        online,
        users_list: stats::summarize(users_list),
        users_list_bytes,
        users_online: stats::summarize(users_online),
        users_online_bytes,
        presence_fanout: stats::summarize(presence),
        role_mention: stats::summarize(mention),
        plain_message: stats::summarize(plain),
        server_cpu_s: cpu.server_cpu_s,
        rss_kib: procfs::rss_kib(target.pid())?,
    })
}

/// `rounds` requests of `frame` one after another: each one's latency, and the last reply's size.
async fn requests(ws: &mut Ws, frame: serde_json::Value, rounds: usize) -> Result<(Vec<u64>, usize)> {
    let mut latencies = Vec::with_capacity(rounds);
    let mut bytes = 0;
    for round in 0..rounds {
        let t0 = Instant::now();
        bytes = client::request(ws, frame.clone(), &format!("q{round}")).await?.len();
        latencies.push(t0.elapsed().as_micros() as u64);
    }
    Ok((latencies, bytes))
}

/// Reads one online connection, reporting newcomers (`bench<N>` connecting) and bench messages.
async fn read(mut ws: Ws, seen: mpsc::UnboundedSender<Seen>) {
    while let Ok(Some(text)) = client::next_text(&mut ws).await {
        let Some(p) = client::parse(&text) else { continue };
        let event = match p.cmd.as_ref() {
            "user_connect" => account_of_newcomer(&text).map(Seen::Presence),
            "message_new" => p.message.and_then(|m| round_of_message(m.content.as_deref()?)).map(Seen::Message),
            _ => None,
        };
        if let Some(event) = event
            && seen.send(event).is_err()
        {
            return;
        }
    }
}

/// The account number of a `user_connect` (`bench<N>`): the newcomer of round r is `online + r`.
fn account_of_newcomer(text: &str) -> Option<usize> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let name = v["user"]["username"].as_str().or_else(|| v["username"].as_str())?;
    name.strip_prefix("bench")?.parse().ok()
}

/// `community <round> <true|false>` → the message's number: two per round, the mention first.
fn round_of_message(content: &str) -> Option<usize> {
    let rest = content.trim_start_matches("@&user ").strip_prefix("community ")?;
    let (round, mention) = rest.split_once(' ')?;
    Some(round.parse::<usize>().ok()? * 2 + usize::from(mention == "false"))
}

/// Waits until `count` readers reported an event matching `wanted`; other events are skipped.
async fn wait_all(
    seen: &mut mpsc::UnboundedReceiver<Seen>,
    count: usize,
    wanted: impl Fn(&Seen) -> bool,
) -> Result<()> {
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < count {
        let event = tokio::time::timeout_at(deadline, seen.recv())
            .await
            .with_context(|| format!("only {got} of {count} connections saw the event"))?
            .context("every reader ended")?;
        if wanted(&event) {
            got += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_newcomers_are_numbered() {
        assert_eq!(round_of_message("@&user community 3 true"), Some(6));
        assert_eq!(round_of_message("community 3 false"), Some(7));
        assert_eq!(round_of_message("hello"), None);
        assert_eq!(account_of_newcomer(r#"{"cmd":"user_connect","user":{"username":"bench2005"}}"#), Some(2005));
    }
}
