//! TLS listeners: the docker CLI connects with client certificates
//! (DOCKER_TLS_VERIFY + DOCKER_CERT_PATH) and is identified by the
//! certificate's CN; without a certificate it is refused at the handshake.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};

struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

fn pki(client_cn: &str) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "portcullis test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut sp =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "portcullis");
    sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = sp.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
    cp.distinguished_name.push(DnType::CommonName, client_cn);
    cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();

    Pki {
        ca: ca.pem(),
        server_cert: server.pem(),
        server_key: server_key.serialize_pem(),
        client_cert: client.pem(),
        client_key: client_key.serialize_pem(),
    }
}

fn docker_tls(port: u16, cert_path: &Path, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .env("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"))
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", cert_path)
        .env("DOCKER_CONFIG", cert_path.join("config"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    no_docker,
    ignore = "no Docker daemon answers on DOCKER_HOST or /var/run/docker.sock"
)]
fn tls_listener_accepts_client_certificates_and_refuses_without() {
    engine();
    let dir = tempfile::tempdir().unwrap();
    let p = pki("tls-client");
    let server = dir.path().join("server");
    let client = dir.path().join("client");
    let anonymous = dir.path().join("anonymous");
    for d in [&server, &client, &anonymous] {
        std::fs::create_dir_all(d.join("config")).unwrap();
    }
    std::fs::write(server.join("cert.pem"), &p.server_cert).unwrap();
    std::fs::write(server.join("key.pem"), &p.server_key).unwrap();
    std::fs::write(server.join("ca.pem"), &p.ca).unwrap();
    std::fs::write(client.join("ca.pem"), &p.ca).unwrap();
    std::fs::write(client.join("cert.pem"), &p.client_cert).unwrap();
    std::fs::write(client.join("key.pem"), &p.client_key).unwrap();
    // A client that trusts the server but has no certificate of its own.
    std::fs::write(anonymous.join("ca.pem"), &p.ca).unwrap();
    let other = pki("intruder");
    std::fs::write(anonymous.join("cert.pem"), &other.client_cert).unwrap();
    std::fs::write(anonymous.join("key.pem"), &other.client_key).unwrap();

    let port = free_port();
    let listen = format!("tls://127.0.0.1:{port}");
    let s = |f: &str| server.join(f).to_string_lossy().into_owned();
    let (cert, key, ca) = (s("cert.pem"), s("key.pem"), s("ca.pem"));
    let proxy = Proxy::start(&[
        "--listen",
        &listen,
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ]);
    wait_for_tcp(port, Duration::from_secs(10), || proxy.log());

    // The CN is the caller: give it the seed's default rights on every container.
    ok(&proxy.cli(&[
        "trust",
        "create",
        "--set",
        "caller_service=tls-client",
        "--set",
        "target_container=*",
    ]));

    let name = unique("tls");
    let _c = Cleanup(vec![name.clone()]);
    ok(&direct(&["create", "--name", &name, image(), "true"]));
    let out = docker_tls(port, &client, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        ok(&out).lines().any(|l| l == name),
        "tls client sees its containers: {}",
        stdout(&out)
    );
    let out = docker_tls(port, &client, &["rm", &name]);
    assert!(
        !out.status.success(),
        "no can_remove: the CN caller is not the administrator"
    );
    assert!(
        stderr(&out).contains("portcullis: tls-client may not container.remove"),
        "{}",
        stderr(&out)
    );

    // A certificate from another CA fails the handshake.
    let out = docker_tls(port, &anonymous, &["ps"]);
    assert!(!out.status.success());
    assert!(
        !stderr(&out).contains("portcullis:"),
        "refused before any request: {}",
        stderr(&out)
    );
    // And so does no certificate at all.
    std::fs::remove_file(anonymous.join("cert.pem")).unwrap();
    std::fs::remove_file(anonymous.join("key.pem")).unwrap();
    let out = docker_tls(port, &anonymous, &["ps"]);
    assert!(!out.status.success());
}
