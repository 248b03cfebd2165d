//! Throughput and latency of the main request kinds, measured in one run so
//! that their ratios mean something (the client shares the machine).
//!
//!     cargo run --release --example bench                    # SQLite
//!     ACTAS_BENCH_POSTGRES_URL=postgres://… cargo run --release --example bench
//!
//! Each scenario sends REQUESTS requests, CONCURRENCY at a time, to a server
//! started in-process on a fresh database.

use std::time::{Duration, Instant};

use actas::config::Config;
use actas::state::Clock;
use awc::http::Method;
use serde_json::{json, Value};

const REQUESTS: usize = 4000;
const CONCURRENCY: usize = 16;
/// Parallel calls of one impersonation session in the burst scenario.
const FLOOD: usize = 64;
const PASSWORD: &str = "benchmark password 2026";

struct Client {
    http: awc::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, String)>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.insert_header(("authorization", format!("Bearer {token}")));
        }
        let mut res = match body {
            Some((content_type, body)) => req.insert_header(("content-type", content_type)).send_body(body).await,
            None => req.send().await,
        }
        .expect("request reaches the server");
        let body = res.json::<Value>().limit(1 << 20).await.unwrap_or(Value::Null);
        (res.status().as_u16(), body)
    }
}

struct Scenario<'a> {
    name: &'a str,
    method: Method,
    path: &'a str,
    token: Option<&'a str>,
    body: Option<(&'a str, String)>,
}

async fn run(client: &Client, s: &Scenario<'_>) -> (f64, Duration, Duration) {
    let mut latencies = Vec::with_capacity(REQUESTS);
    let started = Instant::now();
    for _ in 0..REQUESTS / CONCURRENCY {
        let batch = (0..CONCURRENCY).map(|_| async {
            let t = Instant::now();
            let (status, _) = client.call(s.method.clone(), s.path, s.token, s.body.clone()).await;
            assert!(status < 300, "{} answered {status}", s.name);
            t.elapsed()
        });
        latencies.extend(futures_util::future::join_all(batch).await);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    (REQUESTS as f64 / elapsed.as_secs_f64(), pct(0.50), pct(0.99))
}

fn main() {
    actix_web::rt::System::new().block_on(async {
        let dir = std::env::temp_dir().join(format!("actas-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = std::env::var("ACTAS_BENCH_POSTGRES_URL").unwrap_or_else(|_| format!("sqlite://{}", dir.join("bench.db").display()));
        let vars = [
            ("ACTAS_DATABASE_URL", url.clone()),
            ("ACTAS_DATA_DIR", dir.display().to_string()),
            ("ACTAS_BOOTSTRAP_ADMIN_EMAIL", "bench@owner.example".to_owned()),
            ("ACTAS_BOOTSTRAP_ADMIN_PASSWORD", PASSWORD.to_owned()),
            ("ACTAS_MAX_IMPERSONATION_MINUTES", "240".to_owned()),
        ];
        let config = Config::from_lookup(|name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())).unwrap();
        let state = actix_web::web::block(move || actas::server::prepare(config, Clock::default())).await.unwrap().unwrap();
        let backend = format!("{:?}", state.backend);
        let app_state = state.clone();
        let server = actix_web::HttpServer::new(move || actas::http::app(app_state.clone()))
            .workers(2)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
        let addr = server.addrs()[0];
        actix_web::rt::spawn(server.run());
        let client = Client { http: awc::Client::builder().timeout(Duration::from_secs(30)).finish(), base: format!("http://{addr}") };

        let login = |email: &'static str| {
            let client = &client;
            async move {
                let body = json!({"email": email, "password": PASSWORD}).to_string();
                client.call(Method::POST, "/api/v1/auth/login", None, Some(("application/json", body))).await.1["access_token"].as_str().unwrap().to_owned()
            }
        };
        let admin = login("bench@owner.example").await;
        let org = client.call(Method::POST, "/api/v1/organizations", Some(&admin), Some(("application/json", json!({"name": "Bench Co"}).to_string()))).await.1;
        let user = json!({"email": "customer@bench.example", "name": "Customer", "password": PASSWORD, "organization_id": org["id"]}).to_string();
        let user = client.call(Method::POST, "/api/v1/users", Some(&admin), Some(("application/json", user))).await.1;
        let customer = login("customer@bench.example").await;
        client.call(Method::PUT, "/api/v1/me/impersonation-consent", Some(&customer), Some(("application/json", json!({"duration_hours": 24}).to_string()))).await;
        let start = json!({"target_user_id": user["id"], "password": PASSWORD}).to_string();
        let started = client.call(Method::POST, "/api/v1/impersonations", Some(&admin), Some(("application/json", start))).await.1;
        let impersonation = started["access_token"].as_str().unwrap().to_owned();
        let introspect = format!("token={impersonation}");
        let consent = json!({"duration_hours": 24}).to_string();

        let scenarios = [
            Scenario { name: "GET /healthz (no auth, no database)", method: Method::GET, path: "/healthz", token: None, body: None },
            Scenario { name: "GET /api/v1/me, login token", method: Method::GET, path: "/api/v1/me", token: Some(&admin), body: None },
            Scenario { name: "GET /api/v1/me, impersonation token (logged)", method: Method::GET, path: "/api/v1/me", token: Some(&impersonation), body: None },
            Scenario { name: "POST /oauth/introspect", method: Method::POST, path: "/oauth/introspect", token: Some(&admin), body: Some(("application/x-www-form-urlencoded", introspect)) },
            Scenario { name: "PUT /api/v1/me/impersonation-consent (a write)", method: Method::PUT, path: "/api/v1/me/impersonation-consent", token: Some(&customer), body: Some(("application/json", consent)) },
        ];
        println!("actas benchmark: {backend}, {REQUESTS} requests per scenario, {CONCURRENCY} concurrent, client and server on one machine\n");
        println!("{:<48} {:>10} {:>10} {:>10}", "scenario", "req/s", "p50 ms", "p99 ms");
        let mut rates = Vec::new();
        for scenario in &scenarios {
            let (rate, p50, p99) = run(&client, scenario).await;
            rates.push(rate);
            println!("{:<48} {:>10.0} {:>10.2} {:>10.2}", scenario.name, rate, p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
        }
        println!("\nimpersonated / login request throughput: {:.2}", rates[2] / rates[1]);

        // A frontend acting as one customer fires many calls at once while
        // everyone else goes on: how much do the others feel it?
        let flooding = std::sync::atomic::AtomicBool::new(true);
        let flood = async {
            let mut sent = 0;
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                let burst = (0..FLOOD).map(|_| client.call(Method::GET, "/api/v1/me/impersonation-consent", Some(&impersonation), None));
                sent += futures_util::future::join_all(burst).await.len();
            }
            sent
        };
        let bystander = Scenario { name: "GET /api/v1/me, login token, during the burst", method: Method::GET, path: "/api/v1/me", token: Some(&admin), body: None };
        let measured = async {
            let result = run(&client, &bystander).await;
            flooding.store(false, std::sync::atomic::Ordering::Relaxed);
            result
        };
        let ((rate, p50, p99), sent) = futures_util::future::join(measured, flood).await;
        println!("{:<48} {:>10.0} {:>10.2} {:>10.2}   ({sent} impersonated calls, {FLOOD} at a time, meanwhile)", bystander.name, rate, p50.as_secs_f64() * 1e3, p99.as_secs_f64() * 1e3);
        println!("bystander throughput during / without the burst: {:.2}", rate / rates[1]);
        let verify = actas::store::audit::verify(&mut state.pool.get().unwrap()).unwrap();
        println!("audit chains after the run: {}", verify.chains.iter().map(|c| format!("{} {} rows ok={}", c.chain.name(), c.checked, c.ok)).collect::<Vec<_>>().join(", "));
        let _ = std::fs::remove_dir_all(dir);
    });
}
