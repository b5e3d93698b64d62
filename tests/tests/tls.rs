//! TLS (rustls) with certificates generated for the test: a dispatcher that requires client certificates
//! serves a client that has one, over TLS, and turns away one without a certificate and one speaking plain
//! HTTP/2; a real robot agent with its own certificate connects and is served.

mod common;

use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use trundle_proto::pb;

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    let ca_key = KeyPair::generate().expect("key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Trundle test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>| {
        let key = KeyPair::generate().expect("key");
        let cert = CertificateParams::new(names).expect("params").signed_by(&key, &issuer).expect("signed");
        (cert.pem(), key.serialize_pem())
    };
    Pki { ca: ca_cert.pem(), server: leaf(vec!["localhost".into()]), client: leaf(vec!["robot-r1".into()]) }
}

async fn tls_channel(url: &str, ca: &str, identity: Option<&(String, String)>) -> Result<Channel, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).domain_name("localhost");
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(c, k));
    }
    Channel::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_serves_certified_clients_only() {
    let pki = pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(dir.path(), None, |o| {
        o.tls = Some(dispatcher::server::TlsConfig {
            cert_pem: pki.server.0.clone().into_bytes(),
            key_pem: pki.server.1.clone().into_bytes(),
            client_ca_pem: Some(pki.ca.clone().into_bytes()),
        });
    })
    .await;
    let url = format!("https://localhost:{}", server.addr.port());
    let token = server.operator_token();
    let list = |ch: Channel| {
        let token = token.clone();
        async move {
            pb::ops_service_client::OpsServiceClient::new(ch)
                .list_shops(authed(pb::ListShopsRequest {}, &token))
                .await
                .map(|r| r.into_inner().shops.len())
        }
    };

    // With a client certificate: served over TLS.
    let ch = tls_channel(&url, &pki.ca, Some(&pki.client)).await.expect("TLS connects");
    assert_eq!(list(ch).await.expect("served"), 0);
    // Without one: the handshake or the first call fails.
    let refused = match tls_channel(&url, &pki.ca, None).await {
        Err(_) => true,
        Ok(ch) => list(ch).await.is_err(),
    };
    assert!(refused, "a client without a certificate is turned away");
    // Plain HTTP/2 to a TLS port: no answer.
    let plain = Channel::from_shared(format!("http://127.0.0.1:{}", server.addr.port())).expect("url");
    let refused = match plain.connect_timeout(Duration::from_secs(5)).connect().await {
        Err(_) => true,
        Ok(ch) => list(ch).await.is_err(),
    };
    assert!(refused, "plain HTTP/2 is not served on a TLS port");

    // A real robot agent session over mutual TLS is welcomed.
    let mut ops = pb::ops_service_client::OpsServiceClient::new(
        tls_channel(&url, &pki.ca, Some(&pki.client)).await.expect("TLS connects"),
    );
    let robot_token = ops
        .register_robot(authed(
            pb::RegisterRobotRequest { robot_id: "r1".into(), name: "R1".into(), depot: Some(ll(CASINO)) },
            &token,
        ))
        .await
        .expect("registers")
        .into_inner()
        .token;
    let mut cfg = robot_agent::session::SessionConfig::new(url.clone(), robot_token);
    cfg.tls = Some(robot_agent::session::ClientTls {
        ca_pem: pki.ca.clone().into_bytes(),
        domain: Some("localhost".into()),
        identity: Some((pki.client.0.clone().into_bytes(), pki.client.1.clone().into_bytes())),
    });
    let platform = robot_agent::platform::KinematicPlatform::new(
        fleet_core::LatLon::new(CASINO.0, CASINO.1).expect("valid"),
        fleet_core::Timestamp(wall_ms()),
    );
    let (_keypad_tx, keypad) = tokio::sync::mpsc::channel(1);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(robot_agent::session::run(
        cfg,
        robot_agent::agent::Agent::new(fleet_core::robot::RobotModel::default()),
        platform,
        keypad,
        None,
        async {
            let _ = stop_rx.await;
        },
    ));
    let mut online = false;
    for _ in 0..100 {
        let robots =
            ops.list_robots(authed(pb::ListRobotsRequest {}, &token)).await.expect("lists").into_inner().robots;
        if robots.iter().any(|r| r.robot_id == "r1" && r.online) {
            online = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(online, "the robot's session over mutual TLS is up");
    let _ = stop_tx.send(());
    let _ = agent.await;
    server.stop().await;
}

/// With TLS configured, the web port is HTTPS with the same certificate, needs no client certificate even when
/// the gRPC port requires one, and marks the session cookie Secure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_port_serves_https_with_secure_cookies() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

    let pki = pki();
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start_with(dir.path(), None, |o| {
        o.tls = Some(dispatcher::server::TlsConfig {
            cert_pem: pki.server.0.clone().into_bytes(),
            key_pem: pki.server.1.clone().into_bytes(),
            client_ca_pem: Some(pki.ca.clone().into_bytes()),
        });
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binds");
        l.set_nonblocking(true).expect("non-blocking");
        o.http = Some(tokio::net::TcpListener::from_std(l).expect("tokio listener"));
    })
    .await;
    let web = server.http.expect("http port");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).expect("CA PEM")).expect("CA added");
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let https = || async {
        let tcp = tokio::net::TcpStream::connect(web).await.expect("connects");
        connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("TLS handshake")
    };

    let health = common::http::request_on(https().await, "localhost", "GET", "/healthz", &[], b"").await;
    assert_eq!(health.status, 200, "{health:?}");
    let body = format!("{{\"token\": \"{}\"}}", server.operator_token());
    let signed = common::http::request_on(
        https().await,
        "localhost",
        "POST",
        "/api/session",
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(signed.status, 200, "{signed:?}");
    let cookie = signed.header("set-cookie").expect("a cookie");
    assert!(cookie.contains("Secure") && cookie.contains("HttpOnly"), "{cookie}");
    // Plain HTTP to the HTTPS port gets no answer.
    let mut plain = tokio::net::TcpStream::connect(web).await.expect("connects");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.expect("writes");
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut raw)).await;
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"), "served plain HTTP on the TLS port");
    server.stop().await;
}
