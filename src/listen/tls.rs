//! TLS: the acceptor built from `--tls-cert`, `--tls-key` and
//! `--tls-client-ca` (client certificates required), and the common name a
//! verified client certificate gives the connection's peer.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::TlsFiles;

pub(super) fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut &read(&files.cert)?[..])
        .collect::<Result<_, _>>()
        .context("parsing --tls-cert")?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &read(&files.key)?[..])
        .context("parsing --tls-key")?
        .context("no private key in --tls-key")?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls_pemfile::certs(&mut &read(&files.client_ca)?[..]) {
        roots.add(ca.context("parsing --tls-client-ca")?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .context("building the client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("loading the server certificate")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The common name of a DER certificate's subject.
pub(super) fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some(cn)
}
