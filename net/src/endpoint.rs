//! The QUIC endpoint: TLS identity, transport limits, and one UDP socket that
//! both serves and connects.
//!
//! Every connection is encrypted (TLS 1.3 inside QUIC). Each install makes a
//! self-signed certificate once (rcgen) and keeps it in the store. Peers are
//! not authenticated by a certificate authority — there is none at a LAN
//! party — so the client accepts any certificate but still checks that the
//! server proves possession of its key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lanspread_core::Store;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::proto::ALPN;

/// Most concurrent requests one connection may have in flight at the QUIC
/// level. The serving side refuses requests over [`MAX_REQUESTS_PER_CONNECTION`]
/// with a typed error before this hard limit is reached.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Requests served at once per connection; more get `TooManyStreams`.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 32;
/// Connections accepted from one remote endpoint (address and port).
pub const MAX_CONNECTIONS_PER_PEER: usize = 4;
/// Connections accepted in all.
pub const MAX_CONNECTIONS: usize = 256;
/// A connection with no traffic for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Keep-alives keep a quiet but live connection from idling out.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_millis(1000);

const TLS_CERT_KEY: &str = "tls_cert_der";
const TLS_KEY_KEY: &str = "tls_key_pkcs8_der";

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot make a TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("QUIC configuration: {0}")]
    Quic(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] lanspread_core::store::StoreError),
}

/// This install's certificate and key.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl TlsIdentity {
    /// A new self-signed identity.
    pub fn generate() -> Result<Self, EndpointError> {
        let certified = rcgen::generate_simple_self_signed(vec!["lanspread.local".to_owned()])?;
        Ok(Self {
            cert_der: certified.cert.der().to_vec(),
            key_der: certified.signing_key.serialize_der(),
        })
    }

    /// The identity kept in the store, made on first use.
    pub fn load_or_create(store: &Store) -> Result<Self, EndpointError> {
        if let (Some(cert_der), Some(key_der)) =
            (store.meta(TLS_CERT_KEY)?, store.meta(TLS_KEY_KEY)?)
        {
            return Ok(Self { cert_der, key_der });
        }
        let identity = Self::generate()?;
        store.put_meta(&[
            (TLS_CERT_KEY, &identity.cert_der),
            (TLS_KEY_KEY, &identity.key_der),
        ])?;
        Ok(identity)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS_PER_CONNECTION))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL));
    if let Ok(idle) = IdleTimeout::try_from(IDLE_TIMEOUT) {
        transport.max_idle_timeout(Some(idle));
    }
    Arc::new(transport)
}

fn server_config(identity: &TlsIdentity) -> Result<quinn::ServerConfig, EndpointError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone()));
    let cert = CertificateDer::from(identity.cert_der.clone());
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

fn client_config() -> Result<quinn::ClientConfig, EndpointError> {
    let provider = provider();
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyPeerCertificate(provider)))
        .with_no_client_auth();
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)
        .map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

/// Opens the endpoint on `addr`: it serves, and connects out from the same
/// socket.
pub fn open_endpoint(
    addr: SocketAddr,
    identity: &TlsIdentity,
) -> Result<quinn::Endpoint, EndpointError> {
    let mut endpoint = quinn::Endpoint::server(server_config(identity)?, addr)
        .map_err(|source| EndpointError::Bind { addr, source })?;
    endpoint.set_default_client_config(client_config()?);
    Ok(endpoint)
}

/// The name the client asks for; every lanspread certificate carries it.
pub const SERVER_NAME: &str = "lanspread.local";

/// Accepts any peer certificate (there is no authority at a LAN party), but
/// verifies the handshake signature, so the connection is encrypted to the
/// holder of that certificate's key.
#[derive(Debug)]
struct AnyPeerCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyPeerCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
