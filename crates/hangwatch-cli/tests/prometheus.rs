//! A real Prometheus scrapes the demo hub's metrics endpoint on loopback,
//! with README's "What to page on" rules loaded, while the demo injects its
//! hangs; then Prometheus' HTTP API is asked what it stored, and the answers
//! are checked against what the demo itself recorded (its `alerts.jsonl`,
//! and its last line: every injected hang detected, no false alert):
//!
//! - `sum by (process, component) (hangwatch_hangs_total{level="permanent"})`
//!   equals the permanent alerts of each process and loop;
//! - the `hangwatch_hang_duration_seconds` histogram has, per process and
//!   loop, one observation per ended hang, their sum, and in each bucket
//!   (README's buckets) the hangs that short;
//! - README's rules pass `promtool check rules`, `PermanentHangs` is seen
//!   firing during the demo for exactly the loops that hung permanently,
//!   and `LongHangs` and `HangAlertsDropped` never even go pending when no
//!   hang was longer than `LongHangs`' threshold and no alert was dropped.
//!
//! The rules are read from README.md, so README cannot drift from what is
//! tested. Without `prometheus` and `promtool` on `PATH` the test says it
//! skipped, unless `HANGWATCH_REQUIRE_PROMETHEUS=1` (as in `.ci/run`) makes
//! that a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hangwatch::integrations::metrics::HANG_DURATION_BUCKETS;
use serde_json::Value;

/// The demo's children, and how long it runs: long enough that its last
/// permanent hang (at about 8 s) is scraped and evaluated a few times
/// before the endpoint goes with the demo.
const PROCESSES: usize = 2;
const DEMO_SECONDS: &str = "12";

/// Prometheus' scrape and rule evaluation interval.
const INTERVAL: &str = "1s";

/// The scrape job, and so the `job` label the rules group by.
const JOB: &str = "hangwatch-demo";

/// How long Prometheus may take to be ready, and the demo to end, on a
/// loaded machine.
const READY_LIMIT: Duration = Duration::from_secs(60);
const DEMO_LIMIT: Duration = Duration::from_secs(120);

#[test]
fn prometheus_scrapes_the_demo_hub_and_readme_rules_page_on_its_permanent_hangs() {
    let missing: Vec<&str> = ["prometheus", "promtool"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    if !missing.is_empty() {
        let required = std::env::var("HANGWATCH_REQUIRE_PROMETHEUS").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "HANGWATCH_REQUIRE_PROMETHEUS=1 but {} not on PATH; apt-get install prometheus",
            missing.join(" and ")
        );
        eprintln!(
            "skipped: {} not installed; apt-get install prometheus",
            missing.join(" and ")
        );
        return;
    }
    let began = Instant::now();
    let root =
        std::env::temp_dir().join(format!("hangwatch-prometheus-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(root.join("logs")).expect("create the test's directory");
    let logs = root.join("logs");
    eprintln!(
        "prometheus test: in {} (left there if the test fails)",
        root.display()
    );

    // 1. README's rules, as README has them, checked by promtool.
    let rules_text = readme_rules();
    let rules = root.join("rules.yml");
    std::fs::write(&rules, &rules_text).expect("write the rules");
    let checked = run_quick(
        Command::new("promtool")
            .arg("check")
            .arg("rules")
            .arg(&rules),
    );
    assert!(
        checked.0.success(),
        "promtool check rules failed on README's \"What to page on\" rules:\n{}\n{rules_text}",
        checked.1
    );
    let long_threshold = rule_threshold(&rules_text, "LongHangs");

    // 2. Prometheus, scraping the port the demo will serve on.
    let demo_port = free_port();
    let config = root.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\n  \
             evaluation_interval: {INTERVAL}\nrule_files:\n  - {}\nscrape_configs:\n  \
             - job_name: {JOB}\n    static_configs:\n      - targets: [\"127.0.0.1:{demo_port}\"]\n",
            rules.display()
        ),
    )
    .expect("write the Prometheus configuration");
    let checked = run_quick(
        Command::new("promtool")
            .arg("check")
            .arg("config")
            .arg(&config),
    );
    assert!(checked.0.success(), "promtool check config:\n{}", checked.1);
    let mut prometheus = Prometheus::start(&config, &root.join("data"), &logs);
    let ready = prometheus.wait_until_ready();
    // Prometheus hands its targets to the scrapers some seconds after it
    // starts: the demo starts once its endpoint has been tried (and found
    // down), so that every figure is scraped from its first zero.
    let tried = prometheus.wait_until_scraping(demo_port);
    eprintln!(
        "prometheus test: Prometheus on 127.0.0.1:{} ready after {ready:?}, scraping after \
         {tried:?}",
        prometheus.port
    );

    // 3. The demo, with its metrics endpoint; the alerts Prometheus has,
    //    polled while it runs.
    let out = root.join("demo");
    let mut demo = Guarded::spawn(
        Command::new(env!("CARGO_BIN_EXE_hangwatch"))
            .args(["demo", "--processes", &PROCESSES.to_string()])
            .args(["--seconds", DEMO_SECONDS, "--metrics"])
            .arg(format!("127.0.0.1:{demo_port}"))
            .arg("--out")
            .arg(&out)
            .env_remove("DEBUGINFOD_URLS"),
        &logs,
        "demo",
    );
    let demo_began = Instant::now();
    let mut seen = Seen::default();
    let status = loop {
        let running = demo.child.try_wait().expect("wait for the demo").is_none();
        match prometheus.api("/api/v1/alerts", &[]) {
            Ok(data) => seen.take(&data, running, demo_began.elapsed()),
            Err(error) => eprintln!("prometheus test: /api/v1/alerts: {error}"),
        }
        if !running {
            break demo.child.wait().expect("the demo's status");
        }
        prometheus.still_running();
        assert!(
            demo_began.elapsed() < DEMO_LIMIT,
            "the demo ran longer than {DEMO_LIMIT:?}:\n{}",
            demo.output()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let demo_took = demo_began.elapsed();
    eprintln!("prometheus test: the demo took {demo_took:?} ({status})");

    // 4. What the demo injected and recorded: the truth.
    let truth = Truth::read(&demo, status, &out.join("alerts.jsonl"));

    // 5. What Prometheus stored, as of its last scrape of the demo.
    let scraped_at = prometheus.last_good_scrape();
    assert!(
        scraped_at > truth.last_alert + 1.0,
        "Prometheus last scraped the demo at {scraped_at:.3}, not well after its last alert at \
         {:.3}: the machine was too slow for a {INTERVAL} scrape interval\n{}",
        truth.last_alert,
        prometheus.log()
    );
    let at = format!("{scraped_at:.3}");
    let permanent = prometheus.vector(
        r#"sum by (process, component) (hangwatch_hangs_total{level="permanent"})"#,
        &at,
        &["process", "component"],
    );
    compare_counts("permanent hangs", &permanent, &truth.permanent);
    let count = prometheus.vector(
        "sum by (process, component) (hangwatch_hang_duration_seconds_count)",
        &at,
        &["process", "component"],
    );
    let ended: BTreeMap<Vec<String>, f64> = truth
        .ended
        .iter()
        .map(|(key, durations)| (key.clone(), durations.len() as f64))
        .collect();
    compare_counts("ended hangs (histogram count)", &count, &ended);
    let sum = prometheus.vector(
        "sum by (process, component) (hangwatch_hang_duration_seconds_sum)",
        &at,
        &["process", "component"],
    );
    for (key, durations) in &truth.ended {
        let expected: f64 = durations.iter().sum();
        let got = sum.get(key).copied().unwrap_or(f64::NAN);
        assert!(
            (got - expected).abs() < 1e-3,
            "hangwatch_hang_duration_seconds_sum of {key:?} is {got}, the demo's ended hangs \
             sum to {expected} s ({durations:?})"
        );
    }
    let buckets = prometheus.vector(
        "sum by (process, component, le) (hangwatch_hang_duration_seconds_bucket)",
        &at,
        &["process", "component", "le"],
    );
    let bounds: BTreeSet<String> = buckets.keys().map(|key| key[2].clone()).collect();
    let mut documented: BTreeSet<String> = HANG_DURATION_BUCKETS
        .iter()
        .map(|bound| format_bound(*bound))
        .collect();
    documented.insert("+Inf".into());
    assert_eq!(
        bounds, documented,
        "the histogram's buckets are not HANG_DURATION_BUCKETS"
    );
    for (key, durations) in &truth.ended {
        for bound in &documented {
            let limit = bound.parse::<f64>().unwrap_or(f64::INFINITY);
            let expected = durations.iter().filter(|d| **d <= limit).count() as f64;
            let mut bucket = key.clone();
            bucket.push(bound.clone());
            assert_eq!(
                buckets.get(&bucket).copied(),
                Some(expected),
                "bucket le={bound} of {key:?}: the demo's ended hangs were {durations:?} s"
            );
        }
    }
    eprintln!(
        "prometheus test: at {at} Prometheus had the demo's {} permanent hangs and {} ended \
         hangs, by process and loop, and their durations' buckets",
        truth.permanent.values().sum::<f64>(),
        truth.ended.values().map(Vec::len).sum::<usize>()
    );

    // 6. The rules: PermanentHangs fired during the demo for the loops that
    //    hung permanently; the others never even went pending without
    //    cause. Two more evaluations first, on what the last scrape brought.
    std::thread::sleep(Duration::from_secs(2));
    let expected: BTreeSet<String> = truth.permanent.keys().map(|key| key[1].clone()).collect();
    let fired: BTreeSet<String> = seen
        .firing_during_demo
        .iter()
        .filter(|(name, _)| name == "PermanentHangs")
        .map(|(_, component)| component.clone())
        .collect();
    assert_eq!(
        fired,
        expected,
        "PermanentHangs should have fired while the demo ran for the loops with permanent hangs \
         (seen: {:?}); the samples Prometheus scraped:\n{}\nrules:\n{rules_text}",
        seen.log,
        prometheus.samples(r#"hangwatch_hangs_total{level="permanent"}[10m]"#, &at)
    );
    let dropped = prometheus.vector(
        "max(max_over_time(hangwatch_alerts_dropped_total[10m]))",
        &at,
        &[],
    );
    let dropped = dropped.values().next().copied().unwrap_or(0.0);
    let longest: BTreeMap<String, f64> =
        truth.ended.iter().fold(BTreeMap::new(), |mut m, (k, d)| {
            let longest = d.iter().copied().fold(0.0, f64::max);
            let entry = m.entry(k[1].clone()).or_insert(0.0_f64);
            *entry = entry.max(longest);
            m
        });
    let now = format!("{:.3}", unix_now());
    let alerts_series = prometheus.vector(
        r#"count by (alertname, component) (count_over_time(ALERTS{alertname=~"LongHangs|HangAlertsDropped"}[10m]))"#,
        &now,
        &["alertname", "component"],
    );
    for key in alerts_series.keys() {
        let (name, component) = (&key[0], &key[1]);
        if name == "LongHangs" {
            let longest = longest.get(component).copied().unwrap_or(0.0);
            assert!(
                longest > long_threshold,
                "LongHangs went pending or firing for {component:?}, whose longest hang was \
                 {longest:.3} s, under the rule's {long_threshold} s (histogram_quantile \
                 interpolates inside a bucket: a threshold that is no bucket bound of \
                 {HANG_DURATION_BUCKETS:?} fires for shorter hangs); rules:\n{rules_text}"
            );
        } else {
            assert!(
                dropped > 0.0,
                "HangAlertsDropped went pending or firing, but the demo dropped no alert; \
                 rules:\n{rules_text}"
            );
        }
    }
    eprintln!(
        "prometheus test: PermanentHangs fired for {fired:?} during the demo; no other rule \
         went pending (longest hangs {longest:?}, LongHangs above {long_threshold} s); \
         {:?} in all",
        began.elapsed()
    );

    drop(demo);
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&root);
}

/// The YAML block of README's "What to page on" section.
fn readme_rules() -> String {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md");
    let text = std::fs::read_to_string(readme).unwrap_or_else(|e| panic!("read {readme}: {e}"));
    let section = text
        .split_once("### What to page on")
        .unwrap_or_else(|| panic!("README.md has no \"### What to page on\" section"))
        .1;
    let block = section
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("README's \"What to page on\" has no ```yaml block"))
        .0;
    block.to_owned()
}

/// The number after the last `>` of the `expr:` of rule `name`.
fn rule_threshold(rules: &str, name: &str) -> f64 {
    let after = rules
        .split_once(&format!("- alert: {name}"))
        .unwrap_or_else(|| panic!("no rule {name} in:\n{rules}"))
        .1;
    let expr = after
        .lines()
        .find_map(|line| line.trim().strip_prefix("expr:"))
        .unwrap_or_else(|| panic!("rule {name} has no expr: in:\n{rules}"));
    expr.rsplit_once('>')
        .and_then(|(_, number)| number.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name}'s expr does not end in \"> NUMBER\": {expr}"))
}

/// A bucket bound as Prometheus writes it in `le`.
fn format_bound(bound: f64) -> String {
    format!("{bound}")
}

/// The alerts seen in `/api/v1/alerts` while the demo ran.
#[derive(Default)]
struct Seen {
    /// (alert name, component) seen firing while the demo was running.
    firing_during_demo: BTreeSet<(String, String)>,
    /// Each alert's first sighting in each state, for messages.
    log: BTreeMap<(String, String, String), String>,
}

impl Seen {
    fn take(&mut self, data: &Value, demo_running: bool, since_start: Duration) {
        for alert in data["alerts"].as_array().into_iter().flatten() {
            let label = |name: &str| alert["labels"][name].as_str().unwrap_or("").to_owned();
            let state = alert["state"].as_str().unwrap_or("").to_owned();
            let (name, component) = (label("alertname"), label("component"));
            if state == "firing" && demo_running {
                self.firing_during_demo
                    .insert((name.clone(), component.clone()));
            }
            self.log.entry((name, component, state)).or_insert_with(|| {
                format!(
                    "{:.1} s into the demo{}",
                    since_start.as_secs_f64(),
                    if demo_running { "" } else { ", after it" }
                )
            });
        }
    }
}

/// What the demo injected, as its own record says.
struct Truth {
    /// Permanent alerts by [process, component].
    permanent: BTreeMap<Vec<String>, f64>,
    /// Ended hangs' durations in seconds by [process, component].
    ended: BTreeMap<Vec<String>, Vec<f64>>,
    /// When the last hang alert was raised, in Unix seconds.
    last_alert: f64,
}

impl Truth {
    fn read(demo: &Guarded, status: ExitStatus, alerts: &Path) -> Truth {
        let stdout = read_or_why(&demo.stdout);
        // The demo's verdict on itself: every hang it injected detected, no
        // alert it did not inject. (A loaded machine can leave a stack
        // missing, which fails the demo but not what is checked here.)
        let verdict = stdout
            .lines()
            .rev()
            .find_map(|line| line.strip_prefix("demo: ")?.split_once(" injected, "))
            .unwrap_or_else(|| panic!("the demo ({status}) gave no verdict:\n{}", demo.output()));
        let injected: usize = verdict.0.parse().expect("a count of injected hangs");
        let expected_verdict = format!("{injected} detected, 0 false alerts");
        assert!(
            injected == 3 * PROCESSES && verdict.1.starts_with(&expected_verdict),
            "the demo did not detect exactly what it injected ({status}):\n{}",
            demo.output()
        );
        let text = std::fs::read_to_string(alerts).unwrap_or_else(|e| {
            panic!(
                "the demo wrote no {}: {e}\n{}",
                alerts.display(),
                demo.output()
            )
        });
        let mut truth = Truth {
            permanent: BTreeMap::new(),
            ended: BTreeMap::new(),
            last_alert: 0.0,
        };
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let alert: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
            let key = vec![
                alert["process"].as_str().expect("process").to_owned(),
                alert["component"]["name"]
                    .as_str()
                    .expect("component")
                    .to_owned(),
            ];
            let raised = alert["time_unix_ms"].as_f64().expect("time_unix_ms") / 1e3;
            match alert["kind"].as_str() {
                Some("permanent") => *truth.permanent.entry(key).or_default() += 1.0,
                Some("ended") => truth
                    .ended
                    .entry(key)
                    .or_default()
                    .push(alert["duration_ms"].as_f64().expect("duration_ms") / 1e3),
                Some("transient") => {}
                _ => continue,
            }
            truth.last_alert = truth.last_alert.max(raised);
        }
        // The demo's plan, as README tells it: per child, a permanent hang
        // in layout and one in network, and three hangs that end.
        for child in 0..PROCESSES {
            let process = format!("child-{child}");
            for component in ["layout", "network"] {
                assert_eq!(
                    truth
                        .permanent
                        .get(&vec![process.clone(), component.into()]),
                    Some(&1.0),
                    "{process} {component}: one permanent hang expected in:\n{text}"
                );
            }
        }
        assert_eq!(truth.permanent.len(), 2 * PROCESSES, "{text}");
        assert_eq!(
            truth.ended.values().map(Vec::len).sum::<usize>(),
            3 * PROCESSES,
            "{text}"
        );
        truth
    }
}

/// Checks Prometheus' figures per key against the demo's: the same for
/// every key the demo has, and zero (or absent) for the others.
fn compare_counts(
    what: &str,
    got: &BTreeMap<Vec<String>, f64>,
    expected: &BTreeMap<Vec<String>, f64>,
) {
    for (key, value) in expected {
        assert_eq!(
            got.get(key),
            Some(value),
            "{what} of {key:?}: Prometheus has {got:?}, the demo recorded {expected:?}"
        );
    }
    for (key, value) in got {
        assert!(
            expected.contains_key(key) || *value == 0.0,
            "{what} of {key:?}: Prometheus has {value}, the demo recorded none ({expected:?})"
        );
    }
}

/// A Prometheus server on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Prometheus {
    fn start(config: &Path, data: &Path, logs: &Path) -> Prometheus {
        let port = free_port();
        let log = logs.join("prometheus.log");
        let log_file = File::create(&log).expect("create the Prometheus log");
        let mut command = Command::new("prometheus");
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone the log file"))
            .stderr(log_file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start prometheus ({command:?}): {e}"));
        Prometheus { child, port, log }
    }

    fn wait_until_ready(&mut self) -> Duration {
        let began = Instant::now();
        loop {
            if let Ok((200, _)) = http_get(self.port, "/-/ready") {
                return began.elapsed();
            }
            self.still_running();
            assert!(
                began.elapsed() < READY_LIMIT,
                "Prometheus was not ready within {READY_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until Prometheus has tried to scrape the target on `port`.
    fn wait_until_scraping(&mut self, port: u16) -> Duration {
        let began = Instant::now();
        let url = format!("http://127.0.0.1:{port}/metrics");
        loop {
            let tried = self
                .api("/api/v1/targets", &[("state", "active")])
                .is_ok_and(|data| {
                    data["activeTargets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|target| {
                            target["scrapeUrl"] == url.as_str()
                                && target["lastScrape"]
                                    .as_str()
                                    .is_some_and(|at| !at.starts_with("0001-"))
                        })
                });
            if tried {
                return began.elapsed();
            }
            self.still_running();
            assert!(
                began.elapsed() < READY_LIMIT,
                "Prometheus did not scrape {url} within {READY_LIMIT:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test if Prometheus has exited.
    fn still_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
    }

    /// The `data` of a successful API answer.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let query: Vec<String> = params
            .iter()
            .map(|(name, value)| format!("{name}={}", percent_encode(value)))
            .collect();
        let target = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let (status, body) = http_get(self.port, &target)?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| format!("HTTP {status}, not JSON ({e}): {body}"))?;
        if status != 200 || answer["status"] != "success" {
            return Err(format!("HTTP {status}: {body}"));
        }
        Ok(answer["data"].clone())
    }

    /// An instant query's vector at `time`, by the values of `labels`.
    fn vector(&self, query: &str, time: &str, labels: &[&str]) -> BTreeMap<Vec<String>, f64> {
        let data = self
            .api("/api/v1/query", &[("query", query), ("time", time)])
            .unwrap_or_else(|e| panic!("query {query} at {time}: {e}"));
        assert_eq!(data["resultType"], "vector", "{query}: {data}");
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|sample| {
                let key = labels
                    .iter()
                    .map(|label| sample["metric"][label].as_str().unwrap_or("").to_owned())
                    .collect();
                let value = sample["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{query}: not a sample: {sample}"));
                (key, value)
            })
            .collect()
    }

    /// The raw samples of a range selector at `time`, one series a line.
    fn samples(&self, selector: &str, time: &str) -> String {
        let data = match self.api("/api/v1/query", &[("query", selector), ("time", time)]) {
            Ok(data) => data,
            Err(error) => return format!("<{selector}: {error}>"),
        };
        let series: Vec<String> = data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|series| {
                let values: Vec<String> = series["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| format!("{}@{}", v[1].as_str().unwrap_or("?"), v[0]))
                    .collect();
                format!("{}: {}", series["metric"], values.join(" "))
            })
            .collect();
        series.join("\n")
    }

    /// When Prometheus last scraped the demo's endpoint successfully, in
    /// Unix seconds: as of then its series hold all the demo counted.
    fn last_good_scrape(&self) -> f64 {
        let query = format!("up{{job=\"{JOB}\"}}[10m]");
        let data = self
            .api("/api/v1/query", &[("query", &query)])
            .unwrap_or_else(|e| panic!("query {query}: {e}"));
        data["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["values"].as_array().cloned().unwrap_or_default())
            .filter(|sample| sample[1] == "1")
            .filter_map(|sample| sample[0].as_f64())
            .fold(None, |last: Option<f64>, t| {
                Some(last.map_or(t, |l| l.max(t)))
            })
            .unwrap_or_else(|| {
                panic!(
                    "Prometheus never scraped the demo successfully: {data}\n{}",
                    self.log()
                )
            })
    }

    fn log(&self) -> String {
        read_or_why(&self.log)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A command with its output in log files, killed on drop if it still
/// runs (a failed test leaves no demo behind).
struct Guarded {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Guarded {
    fn spawn(command: &mut Command, logs: &Path, name: &str) -> Guarded {
        let stdout = logs.join(format!("{name}.stdout"));
        let stderr = logs.join(format!("{name}.stderr"));
        let child = command
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create a log file"))
            .stderr(File::create(&stderr).expect("create a log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {name} ({command:?}): {e}"));
        Guarded {
            child,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            read_or_why(&self.stdout),
            read_or_why(&self.stderr)
        )
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a short command to its end: its status and its output.
fn run_quick(command: &mut Command) -> (ExitStatus, String) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status, text)
}

/// Whether `tool` is an executable file in a directory of `PATH`.
fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(tool))
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
    })
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn read_or_why(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| format!("<{}: {error}>", path.display()))
}

/// `text` for a URL's query string.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// `GET target` on the loopback port: the status and the body.
fn http_get(port: u16, target: &str) -> Result<(u16, String), String> {
    let timeout = Duration::from_secs(10);
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        TcpStream::connect_timeout(&address, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("socket: {e}"))?;
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP header end in {response:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {head:?}"))?;
    Ok((status, body.to_owned()))
}
