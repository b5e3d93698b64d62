//! `trundle`: the client CLI for shops and operators. The token says who you are: an operator token registers
//! shops and robots and issues tokens; a shop token places and follows that shop's orders.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use fleet_core::LatLon;
use fleet_core::map::{ImportSummary, MapGraph, Profile, route_geojson};
use tonic::Request;
use tonic::transport::Channel;
use trundle_proto::pb;
use trundle_proto::prost_types::Timestamp;

#[derive(Parser)]
#[command(name = "trundle", version, about = "Trundle client for shops and operators")]
struct Cli {
    /// Dispatcher URL.
    #[arg(long, global = true, default_value = "http://127.0.0.1:50051", env = "TRUNDLE_SERVER")]
    server: String,
    /// Bearer token (or use --token-file).
    #[arg(long, global = true, env = "TRUNDLE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token, e.g. trundle-data/operator.token.
    #[arg(long, global = true, env = "TRUNDLE_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) of a dispatcher serving TLS (use an https:// URL).
    #[arg(long, global = true, env = "TRUNDLE_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Client certificate and key (PEM) for a dispatcher that requires them.
    #[arg(long, global = true, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    #[arg(long, global = true, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Shops (operator).
    #[command(subcommand)]
    Shop(ShopCmd),
    /// Robots (operator).
    #[command(subcommand)]
    Robot(RobotCmd),
    /// Issue a token (operator).
    Token {
        /// shop, robot or operator
        #[arg(long)]
        role: String,
        /// The shop or robot id (none for operator).
        #[arg(long, default_value = "")]
        subject: String,
        /// Revoke instead of issue: this one token, or with no value every token of role and subject.
        #[arg(long, num_args = 0..=1, default_missing_value = "")]
        revoke: Option<String>,
    },
    /// Orders (shop).
    #[command(subcommand)]
    Order(OrderCmd),
    /// The map (operator).
    #[command(subcommand)]
    Map(MapCmd),
    /// The dispatch policy (operator).
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Follow the fleet live (operator).
    Watch,
    /// Alerts not yet acknowledged (operator).
    #[command(subcommand)]
    Alerts(AlertCmd),
}

#[derive(Subcommand)]
enum AlertCmd {
    /// The open alerts, oldest first.
    List,
    /// Acknowledge (close) an alert.
    Ack { id: u64 },
}

#[derive(Subcommand)]
enum PolicyCmd {
    /// The policy in force and the ones available.
    Show,
    /// Change the policy, only after the simulator's gate passes with it: runs every scenario of the gate file
    /// with the new policy and applies it when every threshold holds; otherwise changes nothing and exits
    /// non-zero.
    Set {
        /// insert-improve, insert or greedy.
        policy: fleet_core::dispatcher::Policy,
        /// The gate file (scenarios/gate.toml ships with the repository).
        #[arg(long)]
        gate: PathBuf,
        /// Where the gate's JUnit XML, Markdown summary and run reports go.
        #[arg(long, default_value = "gate-report")]
        gate_out: PathBuf,
    },
}

/// Runs `gate` with a change applied by `change`; writes its files into `out` and prints its table. Returns
/// whether it passed.
fn run_gate(
    gate: &std::path::Path,
    out: &std::path::Path,
    change: impl FnOnce(sim::gate::Gate) -> sim::gate::Gate,
) -> anyhow::Result<bool> {
    let g = change(sim::gate::Gate::load(gate)?);
    let mut areas = std::collections::BTreeMap::new();
    for m in g.maps() {
        let (area, _) = sim::Area::load(&m).with_context(|| format!("cannot load the map {}", m.display()))?;
        areas.insert(m, area);
    }
    eprintln!("running the gate {} ({} scenarios) on: {}", gate.display(), g.scenarios.len(), g.change.join(", "));
    let result = sim::gate::run(&g, &areas, &mut |_, _, _| {}, &mut |_, _, _| {})?;
    print!("{}", result.table());
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(out.join("gate.junit.xml"), result.junit())?;
    std::fs::write(out.join("gate.md"), result.markdown())?;
    Ok(result.passed)
}

#[derive(Subcommand)]
enum ShopCmd {
    /// Register a shop and print its token.
    Register {
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "")]
        name: String,
        /// LAT,LON of the shop's door.
        #[arg(long, value_parser = latlon)]
        at: pb::LatLon,
    },
    List,
}

#[derive(Subcommand)]
enum RobotCmd {
    /// Register a robot and print its token.
    Register {
        #[arg(long)]
        id: String,
        #[arg(long, default_value = "")]
        name: String,
        /// LAT,LON of its depot.
        #[arg(long, value_parser = latlon)]
        at: pb::LatLon,
    },
    List,
    Pause {
        id: String,
    },
    Resume {
        id: String,
    },
    /// Give an order that has not started loading to this robot instead of the one it has.
    Take {
        id: String,
        #[arg(long)]
        order: String,
    },
    /// Hand an idle robot over to another service area (areas on etcd): it leaves this area's fleet, and the
    /// other area's leader takes it up with its tokens.
    HandOff {
        id: String,
        #[arg(long)]
        to_area: String,
    },
    /// Sets the time by which the robot must have finished every stop, in minutes from now (omit to clear).
    Shift {
        id: String,
        #[arg(long)]
        ends_in_min: Option<u64>,
    },
}

#[derive(clap::Args, Clone)]
struct DeliveryArgs {
    /// LAT,LON of the customer's door.
    #[arg(long, value_parser = latlon)]
    to: pb::LatLon,
    #[arg(long, default_value_t = 1000)]
    weight_g: u32,
    #[arg(long, default_value_t = 1)]
    compartments: u32,
    /// Deliver within this many minutes from now.
    #[arg(long, default_value_t = 60)]
    deliver_in_min: u64,
    /// The parcel is packed in this many minutes (default: now).
    #[arg(long)]
    ready_in_min: Option<u64>,
}

#[derive(Subcommand)]
enum OrderCmd {
    Quote(DeliveryArgs),
    Place {
        #[command(flatten)]
        delivery: DeliveryArgs,
        /// Idempotency key; retrying with the same key never creates a second order.
        #[arg(long)]
        key: Option<String>,
    },
    Get {
        id: String,
    },
    List {
        /// Include closed orders.
        #[arg(long)]
        all: bool,
    },
    Cancel {
        id: String,
    },
    Ready {
        id: String,
    },
    Watch {
        id: String,
    },
}

#[derive(Subcommand)]
enum MapCmd {
    /// Replace the running dispatcher's map, only after the simulator's gate passes on it: runs every scenario
    /// of the gate file on the new map and loads it when every threshold holds; otherwise changes nothing and
    /// exits non-zero. The dispatcher refuses the swap while a robot has steps under way.
    Apply {
        /// The new OpenStreetMap extract (.osm.pbf).
        file: PathBuf,
        /// The gate file (scenarios/gate.toml ships with the repository).
        #[arg(long)]
        gate: PathBuf,
        /// Where the gate's JUnit XML, Markdown summary and run reports go.
        #[arg(long, default_value = "gate-report")]
        gate_out: PathBuf,
    },
    /// Import an OpenStreetMap extract locally and print what was kept and dropped (no server needed).
    Import {
        file: PathBuf,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Route between two coordinates on a local extract (no server needed).
    Route {
        #[arg(long, default_value = "data/monaco.osm.pbf")]
        map: PathBuf,
        #[arg(long, value_parser = latlon)]
        from: pb::LatLon,
        #[arg(long, value_parser = latlon)]
        to: pb::LatLon,
        /// Print the route as a GeoJSON Feature.
        #[arg(long)]
        geojson: bool,
    },
    /// Export a local extract's walkable graph (no server needed).
    Export {
        #[arg(long, default_value = "data/monaco.osm.pbf")]
        map: PathBuf,
        /// Write GeoJSON to this file.
        #[arg(long)]
        geojson: PathBuf,
    },
    /// The server's map.
    Info,
    /// Close the sidewalk between two adjacent nodes.
    Close {
        from: u32,
        to: u32,
    },
    Open {
        from: u32,
        to: u32,
    },
}

fn latlon(s: &str) -> Result<pb::LatLon, String> {
    let (a, b) = s.split_once(',').ok_or("expected LAT,LON")?;
    Ok(pb::LatLon {
        lat: a.trim().parse().map_err(|e| format!("latitude: {e}"))?,
        lon: b.trim().parse().map_err(|e| format!("longitude: {e}"))?,
    })
}

fn now_s() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn ts(secs_from_now: u64) -> Timestamp {
    Timestamp { seconds: now_s() + secs_from_now as i64, nanos: 0 }
}

fn fmt_ts(t: &Option<Timestamp>) -> String {
    match t {
        Some(t) => {
            let d = t.seconds - now_s();
            if d >= 0 { format!("in {} min", (d + 59) / 60) } else { format!("{} min ago", (-d) / 60) }
        }
        None => "-".into(),
    }
}

fn status_name(s: i32) -> String {
    pb::OrderStatus::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("ORDER_STATUS_").to_owned())
        .unwrap_or_default()
}

fn print_order(o: &pb::Order) {
    println!(
        "{}  {:<10} shop {}  robot {}  pickup ETA {}  drop-off ETA {}  PIN {}{}",
        o.order_id,
        status_name(o.status),
        o.shop_id,
        if o.robot_id.is_empty() { "-" } else { &o.robot_id },
        fmt_ts(&o.eta_pickup),
        fmt_ts(&o.eta_dropoff),
        o.pin,
        if o.reason.is_empty() { String::new() } else { format!("  ({})", o.reason) }
    );
}

fn delivery(d: &DeliveryArgs) -> pb::Delivery {
    pb::Delivery {
        dropoff: Some(d.to),
        parcel: Some(pb::Parcel { weight_grams: d.weight_g, compartments: d.compartments }),
        ready_at: d.ready_in_min.map(|m| ts(m * 60)),
        deliver_by: Some(ts(d.deliver_in_min * 60)),
    }
}

struct Client {
    channel: Channel,
    token: String,
}

impl Client {
    fn req<T>(&self, msg: T) -> anyhow::Result<Request<T>> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("authorization", format!("Bearer {}", self.token).parse().context("token is not ASCII")?);
        Ok(r)
    }
    fn ops(&self) -> pb::ops_service_client::OpsServiceClient<Channel> {
        pb::ops_service_client::OpsServiceClient::new(self.channel.clone())
    }
    fn orders(&self) -> pb::order_service_client::OrderServiceClient<Channel> {
        pb::order_service_client::OrderServiceClient::new(self.channel.clone())
    }
}

fn print_robot(r: &pb::Robot) {
    let p = r.position.unwrap_or_default();
    println!(
        "{}  {}  {}{}  at {:.5},{:.5}  battery {:.0}%  plan {:?}  on board {:?}",
        r.robot_id,
        r.name,
        if r.online { "online" } else { "offline" },
        if r.paused { " paused" } else { "" },
        p.lat,
        p.lon,
        r.battery_pct,
        r.planned_orders,
        r.on_board
    );
}

fn load_map(path: &std::path::Path) -> anyhow::Result<(MapGraph, ImportSummary)> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    MapGraph::from_osm(&bytes).with_context(|| format!("cannot import {}", path.display()))
}

fn checked(p: pb::LatLon) -> anyhow::Result<LatLon> {
    LatLon::new(p.lat, p.lon).map_err(|e| anyhow::anyhow!("{e}"))
}

fn map_import(file: &std::path::Path, json: bool) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    let (_, summary) = load_map(file)?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    println!(
        "{}: {} nodes, {} directed edges, {:.1} km of walkable ways, imported in {:.2} s",
        file.display(),
        summary.nodes,
        summary.edges,
        summary.length_km,
        t0.elapsed().as_secs_f64()
    );
    println!("ways used {}, way references outside the extract {}", summary.ways_used, summary.missing_node_refs);
    println!("barrier nodes a robot cannot pass {}", summary.barrier_nodes);
    println!(
        "components dropped {} ({} nodes); only the largest strongly connected one is kept",
        summary.components_dropped, summary.nodes_dropped
    );
    for (why, n) in &summary.ways_skipped {
        println!("skipped {n:>6} ways: {why}");
    }
    Ok(())
}

fn map_route(map: &std::path::Path, from: pb::LatLon, to: pb::LatLon, geojson: bool) -> anyhow::Result<()> {
    let (mut g, _) = load_map(map)?;
    let profile = Profile::default();
    g.prepare(profile);
    let a = g.snap(checked(from)?, 150.0).map_err(|e| anyhow::anyhow!("from: {e}"))?;
    let b = g.snap(checked(to)?, 150.0).map_err(|e| anyhow::anyhow!("to: {e}"))?;
    let (r, geometry) = g.route_between(&a, &b, profile).context("no walkable route between the two points")?;
    if geojson {
        println!("{}", route_geojson(&r, &geometry));
    } else {
        println!(
            "{:.0} m, {:.1} min at {:.1} m/s, {} nodes: {}",
            r.length_m,
            r.duration_s / 60.0,
            profile.speed_mps,
            r.nodes.len(),
            r.nodes.iter().map(|n| n.0.to_string()).collect::<Vec<_>>().join(" ")
        );
    }
    Ok(())
}

fn map_export(map: &std::path::Path, out: &std::path::Path) -> anyhow::Result<()> {
    let (g, _) = load_map(map)?;
    std::fs::write(out, g.to_geojson()).with_context(|| format!("cannot write {}", out.display()))?;
    println!("wrote {} street segments to {}", g.edge_count() / 2, out.display());
    Ok(())
}

/// Map commands that work on a local file, without a dispatcher; `None` for the others.
fn local(cmd: &Cmd) -> Option<anyhow::Result<()>> {
    match cmd {
        Cmd::Map(MapCmd::Import { file, json }) => Some(map_import(file, *json)),
        Cmd::Map(MapCmd::Route { map, from, to, geojson }) => Some(map_route(map, *from, *to, *geojson)),
        Cmd::Map(MapCmd::Export { map, geojson }) => Some(map_export(map, geojson)),
        _ => None,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(done) = local(&cli.cmd) {
        return done;
    }
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?.trim().to_owned()
        }
        (None, None) => bail!("give a token with --token, --token-file, TRUNDLE_TOKEN or TRUNDLE_TOKEN_FILE"),
    };
    let mut endpoint = Channel::from_shared(cli.server.clone()).context("bad --server URL")?;
    if let Some(ca) = &cli.tls_ca {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let identity = match (&cli.tls_cert, &cli.tls_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        let mut tls =
            tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
        if let Some((c, k)) = identity {
            tls = tls.identity(tonic::transport::Identity::from_pem(c, k));
        }
        endpoint = endpoint.tls_config(tls).context("bad TLS settings")?;
    }
    let channel = endpoint.connect().await.with_context(|| format!("cannot reach the dispatcher at {}", cli.server))?;
    let c = Client { channel, token };
    match cli.cmd {
        Cmd::Shop(ShopCmd::Register { id, name, at }) => {
            let r = c
                .ops()
                .register_shop(c.req(pb::RegisterShopRequest { shop_id: id, name, location: Some(at) })?)
                .await?;
            let r = r.into_inner();
            println!("registered shop {}", r.shop.map(|s| s.shop_id).unwrap_or_default());
            println!("{}", r.token);
        }
        Cmd::Shop(ShopCmd::List) => {
            for s in c.ops().list_shops(c.req(pb::ListShopsRequest {})?).await?.into_inner().shops {
                let p = s.location.unwrap_or_default();
                println!("{}  {}  at {:.5},{:.5}", s.shop_id, s.name, p.lat, p.lon);
            }
        }
        Cmd::Robot(RobotCmd::Register { id, name, at }) => {
            let r = c
                .ops()
                .register_robot(c.req(pb::RegisterRobotRequest { robot_id: id, name, depot: Some(at) })?)
                .await?;
            let r = r.into_inner();
            println!("registered robot {}", r.robot.map(|r| r.robot_id).unwrap_or_default());
            println!("{}", r.token);
        }
        Cmd::Robot(RobotCmd::List) => {
            for r in c.ops().list_robots(c.req(pb::ListRobotsRequest {})?).await?.into_inner().robots {
                print_robot(&r);
            }
        }
        Cmd::Robot(RobotCmd::Pause { id }) => {
            print_robot(&c.ops().pause_robot(c.req(pb::RobotRequest { robot_id: id })?).await?.into_inner())
        }
        Cmd::Robot(RobotCmd::Take { id, order }) => {
            let o = c.ops().reassign_order(c.req(pb::ReassignOrderRequest { order_id: order, robot_id: id })?).await?;
            print_order(&o.into_inner());
        }
        Cmd::Robot(RobotCmd::Resume { id }) => {
            print_robot(&c.ops().resume_robot(c.req(pb::RobotRequest { robot_id: id })?).await?.into_inner())
        }
        Cmd::Robot(RobotCmd::HandOff { id, to_area }) => {
            let req = pb::HandOffRobotRequest { robot_id: id.clone(), to_area: to_area.clone() };
            c.ops().hand_off_robot(c.req(req)?).await?;
            println!("robot {id} handed over to area {to_area}");
        }
        Cmd::Robot(RobotCmd::Shift { id, ends_in_min }) => {
            let req = pb::SetRobotShiftRequest { robot_id: id, shift_end: ends_in_min.map(|m| ts(m * 60)) };
            print_robot(&c.ops().set_robot_shift(c.req(req)?).await?.into_inner())
        }
        Cmd::Token { role, subject, revoke } => {
            let role = match role.as_str() {
                "shop" => pb::Role::Shop,
                "robot" => pb::Role::Robot,
                "operator" => pb::Role::Operator,
                other => bail!("unknown role {other:?}: use shop, robot or operator"),
            };
            if let Some(token) = revoke {
                let req = pb::RevokeTokensRequest { role: role as i32, subject, token };
                let r = c.ops().revoke_tokens(c.req(req)?).await?;
                println!("revoked {} token(s)", r.into_inner().revoked);
            } else {
                let r = c.ops().issue_token(c.req(pb::IssueTokenRequest { role: role as i32, subject })?).await?;
                println!("{}", r.into_inner().token);
            }
        }
        Cmd::Order(OrderCmd::Quote(d)) => {
            let q = c.orders().quote(c.req(pb::QuoteRequest { delivery: Some(delivery(&d)) })?).await?;
            let q = q.into_inner().quote.unwrap_or_default();
            if q.feasible {
                println!(
                    "feasible: pickup {}, drop-off {} (latest {})",
                    fmt_ts(&q.eta_pickup),
                    fmt_ts(&q.eta_dropoff),
                    fmt_ts(&q.eta_latest)
                );
            } else {
                println!("not feasible: {}", q.reason);
            }
        }
        Cmd::Order(OrderCmd::Place { delivery: d, key }) => {
            let key = key.unwrap_or_else(|| format!("cli-{}-{}", now_s(), std::process::id()));
            let r = c
                .orders()
                .place_order(c.req(pb::PlaceOrderRequest { idempotency_key: key, delivery: Some(delivery(&d)) })?)
                .await?
                .into_inner();
            if let Some(o) = &r.order {
                print_order(o);
            }
        }
        Cmd::Order(OrderCmd::Get { id }) => {
            print_order(&c.orders().get_order(c.req(pb::GetOrderRequest { order_id: id })?).await?.into_inner())
        }
        Cmd::Order(OrderCmd::List { all }) => {
            let mut page_token = String::new();
            loop {
                let req = pb::ListOrdersRequest { include_closed: all, limit: 0, page_token };
                let r = c.orders().list_orders(c.req(req)?).await?.into_inner();
                for o in &r.orders {
                    print_order(o);
                }
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
        }
        Cmd::Order(OrderCmd::Cancel { id }) => {
            print_order(&c.orders().cancel_order(c.req(pb::CancelOrderRequest { order_id: id })?).await?.into_inner())
        }
        Cmd::Order(OrderCmd::Ready { id }) => {
            print_order(&c.orders().mark_ready(c.req(pb::MarkReadyRequest { order_id: id })?).await?.into_inner())
        }
        Cmd::Order(OrderCmd::Watch { id }) => {
            let mut s = c.orders().watch_order(c.req(pb::WatchOrderRequest { order_id: id })?).await?.into_inner();
            while let Some(o) = s.message().await? {
                let p = o.robot_position.unwrap_or_default();
                print!("robot at {:.5},{:.5}  ", p.lat, p.lon);
                print_order(&o);
            }
        }
        // Answered by `local` before connecting.
        Cmd::Map(MapCmd::Import { .. } | MapCmd::Route { .. } | MapCmd::Export { .. }) => {}
        Cmd::Map(MapCmd::Info) => {
            let m = c.ops().get_map(c.req(pb::GetMapRequest {})?).await?.into_inner();
            let o = m.origin.unwrap_or_default();
            println!(
                "{} nodes, {} edges, centre {:.5},{:.5}, fingerprint {}",
                m.nodes, m.edges, o.lat, o.lon, m.fingerprint
            );
            for e in m.closed {
                println!("closed: {} - {}", e.from_node, e.to_node);
            }
        }
        Cmd::Map(MapCmd::Close { from, to }) => {
            c.ops().close_edge(c.req(pb::EdgeRequest { from_node: from, to_node: to })?).await?;
            println!("closed {from} - {to}");
        }
        Cmd::Map(MapCmd::Open { from, to }) => {
            c.ops().open_edge(c.req(pb::EdgeRequest { from_node: from, to_node: to })?).await?;
            println!("opened {from} - {to}");
        }
        Cmd::Map(MapCmd::Apply { file, gate, gate_out }) => {
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read the map {}", file.display()))?;
            let (g, out, f) = (gate.clone(), gate_out.clone(), file.clone());
            let passed = tokio::task::spawn_blocking(move || run_gate(&g, &out, |g| g.with_map(&f))).await??;
            if !passed {
                bail!(
                    "the gate failed on the map {}: nothing was changed (see {}/gate.md)",
                    file.display(),
                    gate_out.display()
                );
            }
            let r = c.ops().load_map(c.req(pb::LoadMapRequest { osm_pbf: bytes })?).await?.into_inner();
            let m = r.map.unwrap_or_default();
            println!(
                "the gate passed; map {} is in force ({} nodes, {} edges, fingerprint {}): {} open orders moved, \
                 {} cancelled, {} closures dropped",
                file.display(),
                m.nodes,
                m.edges,
                m.fingerprint,
                r.orders_moved,
                r.cancelled.len(),
                r.closures_dropped
            );
            for o in r.cancelled {
                println!("cancelled {}: {}", o.order_id, o.reason);
            }
        }
        Cmd::Policy(PolicyCmd::Show) => {
            let p = c.ops().get_policy(c.req(pb::GetPolicyRequest {})?).await?.into_inner();
            println!("policy {} (available: {})", p.policy, p.available.join(", "));
        }
        Cmd::Policy(PolicyCmd::Set { policy, gate, gate_out }) => {
            let (g, out) = (gate.clone(), gate_out.clone());
            let passed = tokio::task::spawn_blocking(move || run_gate(&g, &out, |g| g.with_policy(policy))).await??;
            if !passed {
                bail!("the gate failed with policy {policy}: nothing was changed (see {}/gate.md)", gate_out.display());
            }
            let p = c.ops().set_policy(c.req(pb::SetPolicyRequest { policy: policy.to_string() })?).await?.into_inner();
            println!("the gate passed; policy {} is in force", p.policy);
        }
        Cmd::Watch => {
            let mut s = c.ops().watch_fleet(c.req(pb::WatchFleetRequest {})?).await?.into_inner();
            while let Some(ev) = s.message().await? {
                match ev.event {
                    Some(pb::fleet_event::Event::Robot(r)) => print_robot(&r),
                    Some(pb::fleet_event::Event::Alert(a)) => {
                        println!("ALERT {} {}: {}", a.alert_id, a.robot_id, a.message)
                    }
                    None => {}
                }
            }
        }
        Cmd::Alerts(AlertCmd::List) => {
            let r = c.ops().list_alerts(c.req(pb::ListAlertsRequest {})?).await?.into_inner();
            for a in r.alerts {
                let at = a.raised_at.map_or(0, |t| t.seconds);
                println!("{} at {at} {}: {}", a.alert_id, a.robot_id, a.message);
            }
        }
        Cmd::Alerts(AlertCmd::Ack { id }) => {
            c.ops().ack_alert(c.req(pb::AckAlertRequest { alert_id: id })?).await?;
            println!("alert {id} acknowledged");
        }
    }
    Ok(())
}
