//! TLS to PostgreSQL when the URL asks for it, with libpq's `sslmode` and `sslrootcert`:
//!
//! - `require`: encrypted; the server's certificate is not checked (libpq's meaning) — unless
//!   `sslrootcert` is given, which makes it `verify-ca`, as libpq does;
//! - `verify-ca`: the certificate must chain to a trusted root;
//! - `verify-full`: and it must name the host the URL connects to.
//!
//! Trusted roots are `sslrootcert` (a PEM file) or else the system's. `disable`, `allow`,
//! `prefer` or no `sslmode`: no TLS. tokio-postgres knows neither the verify modes nor
//! `sslrootcert`, so [`from_url`] takes both out of the URL before it parses the rest.

use crate::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

/// How a connection is secured: not at all, or with this client configuration.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Option<Arc<ClientConfig>>,
}

impl Tls {
    /// Whether connections use TLS.
    pub(crate) fn enabled(&self) -> bool {
        self.config.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Off,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The URL without `sslmode` and `sslrootcert`, and the TLS they ask for.
pub(crate) fn from_url(url: &str) -> Result<(String, Tls)> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => return Ok((url.to_string(), Tls { config: None })),
    };
    let mut mode = Mode::Off;
    let mut root = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                mode = match value {
                    "disable" | "allow" | "prefer" => Mode::Off,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(Error::BadUrl(format!(
                            "malformed PostgreSQL URL: sslmode `{other}` is not one of disable, allow, prefer, require, verify-ca, verify-full"
                        )))
                    }
                }
            }
            "sslrootcert" => root = Some(percent_decode(value)),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    if mode == Mode::Require && root.is_some() {
        mode = Mode::VerifyCa;
    }
    let config = match mode {
        Mode::Off => None,
        mode => Some(Arc::new(client_config(mode, root.as_deref())?)),
    };
    Ok((url, Tls { config }))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).and_then(|&b| hex(b)),
            bytes.get(i + 2).and_then(|&b| hex(b)),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(file: Option<&str>) -> Result<RootCertStore> {
    let mut store = RootCertStore::empty();
    match file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|i| i.collect::<std::result::Result<Vec<_>, _>>())
                .map_err(|e| Error::BadUrl(format!("sslrootcert {path}: {e}")))?;
            if certs.is_empty() {
                return Err(Error::BadUrl(format!(
                    "sslrootcert {path}: no PEM certificate in it"
                )));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| Error::BadUrl(format!("sslrootcert {path}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for c in found.certs {
                // One unreadable system certificate does not spoil the others.
                let _ = store.add(c);
            }
            if store.is_empty() {
                return Err(Error::BadUrl(
                    "sslmode asks to verify the server, but the system has no trusted roots; give sslrootcert=FILE".into(),
                ));
            }
        }
    }
    Ok(store)
}

fn client_config(mode: Mode, root: Option<&str>) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::BadUrl(format!("TLS: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        Mode::Require => Arc::new(Unchecked(provider())),
        Mode::VerifyCa | Mode::VerifyFull => {
            let webpki =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(root)?), provider())
                    .build()
                    .map_err(|e| Error::BadUrl(format!("TLS: {e}")))?;
            if mode == Mode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            }
        }
        Mode::Off => unreachable!("no TLS configuration is made for sslmode off"),
    };
    Ok(builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// `sslmode=require`: any certificate (the handshake's signatures are still checked).
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain is checked, the name it is for is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl MakeTlsConnect<Socket> for Tls {
    type Stream = Stream;
    type TlsConnect = Connect;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connect> {
        let name = ServerName::try_from(domain.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Connect {
            config: self.config.clone(),
            name,
        })
    }
}

/// One connection's handshake.
pub(crate) struct Connect {
    config: Option<Arc<ClientConfig>>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for Connect {
    type Stream = Stream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Stream>> + Send>>;

    fn connect(self, socket: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self.config.ok_or_else(|| {
                io::Error::other("the server asked for TLS, and the URL's sslmode has it off")
            })?;
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(self.name, socket)
                .await?;
            Ok(Stream(Box::new(stream)))
        })
    }
}

/// A connection over TLS.
pub(crate) struct Stream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl tokio_postgres::tls::TlsStream for Stream {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM without channel binding, as with libpq's default `channel_binding=prefer`
        // against a server that does not offer it.
        ChannelBinding::none()
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_of_the_url() {
        let (url, tls) =
            from_url("postgres://u:p@h/db?sslmode=require&application_name=x").expect("parses");
        assert_eq!(url, "postgres://u:p@h/db?application_name=x");
        assert!(tls.enabled());
        let (url, tls) = from_url("postgres://u:p@h/db?sslmode=prefer").expect("parses");
        assert_eq!(url, "postgres://u:p@h/db");
        assert!(!tls.enabled(), "prefer stays plain, as before");
        let (_, tls) = from_url("postgres://u:p@h/db").expect("parses");
        assert!(!tls.enabled());
    }

    #[test]
    fn bad_tls_settings_are_named() {
        let e = from_url("postgres://h/db?sslmode=sometimes")
            .err()
            .expect("refused");
        assert!(e.to_string().contains("sslmode `sometimes`"), "{e}");
        let e = from_url("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
            .err()
            .expect("refused");
        assert!(
            e.to_string().contains("sslrootcert /nonexistent.pem"),
            "{e}"
        );
    }

    #[test]
    fn percent_escapes_in_paths_are_decoded() {
        assert_eq!(percent_decode("%2Ftmp%2Fca.pem"), "/tmp/ca.pem");
        assert_eq!(percent_decode("/a b%zz"), "/a b%zz");
    }
}
