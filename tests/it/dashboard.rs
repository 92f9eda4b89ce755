//! The game-day dashboard in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them), with real traffic.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

use crate::admin::call;
use crate::harness::Harness;

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A browser session, or `None` (and a loud skip) where chromedriver is not installed.
async fn browser() -> Option<(fantoccini::Client, Driver)> {
    if !std::path::Path::new("/usr/bin/chromedriver").exists() {
        assert!(
            std::env::var_os("S3CHAOS_REQUIRE_CHROMIUM").is_none(),
            "S3CHAOS_REQUIRE_CHROMIUM is set but /usr/bin/chromedriver is missing (chromium-driver)"
        );
        eprintln!(
            "SKIPPED the dashboard browser test: /usr/bin/chromedriver is missing (.ci/run installs chromium-driver)"
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let driver = Driver(child, port);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({"args": ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1200,1400"], "binary": "/usr/bin/chromium"}),
    );
    for _ in 0..100 {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        if let Ok(client) = ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.1))
            .await
        {
            return Some((client, driver));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn element(page: &fantoccini::Client, id: &str) -> fantoccini::elements::Element {
    page.find(Locator::Id(id))
        .await
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
}

async fn click(page: &fantoccini::Client, id: &str) {
    element(page, id).await.click().await.unwrap();
}

async fn type_into(page: &fantoccini::Client, id: &str, text: &str) {
    element(page, id).await.send_keys(text).await.unwrap();
}

async fn choose(page: &fantoccini::Client, id: &str, label: &str) {
    element(page, id).await.select_by_label(label).await.unwrap();
}

/// Waits (up to 10 s) until the element's text satisfies `ok`; returns it.
async fn text_until(page: &fantoccini::Client, id: &str, ok: impl Fn(&str) -> bool) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        if let Ok(e) = page.find(Locator::Id(id)).await {
            last = e.text().await.unwrap_or_default();
            if ok(&last) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("#{id} never got there; last: {last:?}");
}

/// The dashboard updates with live traffic; Halt halts (as `/status` says) and Resume
/// resumes; a rule added from the form makes the next request fail as it says; a rule
/// switched off stops injecting; a scenario loads from the library; a screenshot is kept as
/// `target/test-artefacts/dashboard.png`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_live_traffic_and_its_controls_act() {
    let Some((page, _driver)) = browser().await else { return };
    let scenario = "name: gameday\nrules:\n  - {name: slow, match: {operation: HeadObject}, fault: {latency: 1ms}}\n";
    let h = Harness::start(scenario).await;
    let (admin, _control) = h.admin(scenario, None).await;
    let c = h.client();
    c.create_bucket().bucket("dash").send().await.unwrap();
    c.put_object()
        .bucket("dash")
        .key("k")
        .body(b"v".to_vec().into())
        .send()
        .await
        .unwrap();
    let traffic = {
        let c = c.clone();
        tokio::spawn(async move {
            loop {
                let _ = c.head_object().bucket("dash").key("k").send().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    page.goto(&format!("http://{admin}/")).await.unwrap();
    text_until(&page, "who", |t| t.contains("scenario gameday")).await;
    let rps = text_until(&page, "rps", |t| t.parse::<f64>().is_ok_and(|r| r > 1.0)).await;
    eprintln!("the dashboard shows {rps} requests/s");
    let first: u64 = text_until(&page, "requests", |t| t.parse::<u64>().is_ok())
        .await
        .parse()
        .unwrap();
    text_until(&page, "requests", |t| t.parse::<u64>().is_ok_and(|n| n > first + 10)).await;
    text_until(&page, "recent", |t| t.contains("slow")).await;
    // Per operation, on demand: the HEAD traffic under HeadObject, none under PutObject.
    let operation = element(&page, "operation").await;
    text_until(&page, "operation", |t| {
        t.contains("HeadObject") && t.contains("PutObject")
    })
    .await;
    operation.select_by_label("PutObject").await.unwrap();
    text_until(&page, "rps", |t| t == "0.0").await;
    operation.select_by_label("HeadObject").await.unwrap();
    text_until(&page, "rps", |t| t.parse::<f64>().is_ok_and(|r| r > 1.0)).await;

    type_into(&page, "reason", "browser test").await;
    click(&page, "halt").await;
    text_until(&page, "halted", |t| t.contains("HALTED") && t.contains("browser test")).await;
    let (_, status) = call(admin, "GET", "/status", "", None).await;
    assert_eq!(status["halted"], true, "{status}");
    click(&page, "resume").await;
    text_until(&page, "message", |t| t.contains("resumed")).await;
    let (_, status) = call(admin, "GET", "/status", "", None).await;
    assert_eq!(status["halted"], false, "{status}");

    // A rule from the form: every GetObject answered SlowDown.
    choose(&page, "rule-error", "SlowDown").await;
    click(&page, "add-rule-button").await;
    text_until(&page, "message", |t| t.contains("added rule api/")).await;
    let one = h.single_attempt_client(None);
    let err = one.get_object().bucket("dash").key("k").send().await.unwrap_err();
    assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&err), Some("SlowDown"));
    text_until(&page, "rules", |t| t.contains("api/")).await;

    // Switch the file's rule off from its row: it still matches, never fires.
    page.find(Locator::Css(r#"button.switch[data-rule="slow"]"#))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    text_until(&page, "message", |t| t.contains("rule slow: disabled")).await;
    let injected = |rules: &serde_json::Value| {
        rules["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "slow")
            .unwrap()["injected"]
            .as_u64()
            .unwrap()
    };
    let (_, rules) = call(admin, "GET", "/rules", "", None).await;
    let slow = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "slow")
        .unwrap()
        .clone();
    assert_eq!(slow["enabled"], false, "{rules}");
    let before = injected(&rules);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, rules) = call(admin, "GET", "/rules", "", None).await;
    assert_eq!(
        injected(&rules),
        before,
        "a disabled rule injects nothing while traffic goes on"
    );

    let shot = page.screenshot().await.unwrap();
    let artefacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artefacts");
    if std::fs::create_dir_all(&artefacts).is_ok() {
        let _ = std::fs::write(artefacts.join("dashboard.png"), shot);
    }

    // Load a scenario from the library.
    choose(&page, "library", "ambiguous-writes").await;
    click(&page, "load").await;
    text_until(&page, "message", |t| t.contains("loaded builtin:ambiguous-writes")).await;
    let (_, status) = call(admin, "GET", "/status", "", None).await;
    assert_eq!(status["scenario"], "ambiguous-writes", "{status}");
    traffic.abort();
    page.close().await.unwrap();
}

/// With `--admin-token`, the page asks for it: a wrong one is refused and the prompt stays;
/// the right one shows the drill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_shows_the_login_prompt() {
    let Some((page, _driver)) = browser().await else { return };
    let scenario = "name: locked\nrules: []\n";
    let h = Harness::start(scenario).await;
    let (admin, _control) = h.admin(scenario, Some("sekrit")).await;
    page.goto(&format!("http://{admin}/")).await.unwrap();
    let login = page.wait().for_element(Locator::Id("login")).await.unwrap();
    for _ in 0..50 {
        if login.is_displayed().await.unwrap() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(login.is_displayed().await.unwrap(), "the token prompt is shown");
    type_into(&page, "token", "wrong").await;
    click(&page, "login-button").await;
    text_until(&page, "login-error", |t| t.contains("refused")).await;
    assert!(login.is_displayed().await.unwrap());
    let token = element(&page, "token").await;
    token.clear().await.unwrap();
    token.send_keys("sekrit").await.unwrap();
    click(&page, "login-button").await;
    text_until(&page, "who", |t| t.contains("scenario locked")).await;
    assert!(!login.is_displayed().await.unwrap(), "signed in: the prompt is gone");
    page.close().await.unwrap();
}
