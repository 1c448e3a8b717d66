//! The QUIC endpoint: TLS identity, transport limits, and one UDP socket that
//! both serves and connects.
//!
//! Every connection is encrypted (TLS 1.3 inside QUIC). Each install makes a
//! self-signed certificate once (rcgen) and keeps it in the store. Peers are
//! not authenticated by a certificate authority — there is none at a LAN
//! party — so both sides accept any certificate but check that the other
//! proves possession of its key (client certificates are required). A
//! peer's id is derived from its certificate's public key
//! ([`peer_id_of_cert`]): no PC can claim another's id without its key.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lanspread_core::Store;
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::DistinguishedName;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::proto::ALPN;

/// Most concurrent requests one connection may have in flight at the QUIC
/// level. The serving side refuses requests over [`MAX_REQUESTS_PER_CONNECTION`]
/// with a typed error before this hard limit is reached.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 64;
/// Requests served at once per connection; more get `TooManyStreams`.
pub const MAX_REQUESTS_PER_CONNECTION: usize = 32;
/// Connections accepted from one host (IP address, whatever the ports):
/// its running peer, and a few command-line tools asking at once.
pub const MAX_CONNECTIONS_PER_HOST: usize = 16;
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
    #[error("the stored TLS certificate is unreadable: {0}")]
    BadCertificate(String),
    #[error(transparent)]
    Store(#[from] lanspread_core::store::StoreError),
}

/// A peer's id: the first 16 bytes of the BLAKE3 hash of its certificate's
/// public key (SubjectPublicKeyInfo, DER).
pub fn peer_id_of_cert(cert: &CertificateDer<'_>) -> Result<[u8; 16], webpki::Error> {
    let parsed = webpki::EndEntityCert::try_from(cert)?;
    let spki = parsed.subject_public_key_info();
    let hash = blake3::hash(spki.as_ref());
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash.as_bytes()[..16]);
    Ok(id)
}

/// The id proven by the certificate the other end of `connection` showed
/// in the handshake (`None` if it showed none that parses).
pub fn remote_peer_id(connection: &quinn::Connection) -> Option<[u8; 16]> {
    let identity = connection.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    peer_id_of_cert(certs.first()?).ok()
}

/// This install's certificate and key, and the peer id they prove.
#[derive(Debug, Clone)]
pub struct TlsIdentity {
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
    peer_id: [u8; 16],
}

impl TlsIdentity {
    /// A new self-signed identity.
    pub fn generate() -> Result<Self, EndpointError> {
        let certified = rcgen::generate_simple_self_signed(vec!["lanspread.local".to_owned()])?;
        Self::from_der(
            certified.cert.der().to_vec(),
            certified.signing_key.serialize_der(),
        )
    }

    fn from_der(cert_der: Vec<u8>, key_der: Vec<u8>) -> Result<Self, EndpointError> {
        let peer_id = peer_id_of_cert(&CertificateDer::from(cert_der.as_slice()))
            .map_err(|e| EndpointError::BadCertificate(e.to_string()))?;
        Ok(Self {
            cert_der,
            key_der,
            peer_id,
        })
    }

    /// The id this identity proves (see [`peer_id_of_cert`]).
    pub fn peer_id(&self) -> [u8; 16] {
        self.peer_id
    }

    /// The identity kept in the store, made on first use.
    pub fn load_or_create(store: &Store) -> Result<Self, EndpointError> {
        if let (Some(cert_der), Some(key_der)) =
            (store.meta(TLS_CERT_KEY)?, store.meta(TLS_KEY_KEY)?)
        {
            return Self::from_der(cert_der, key_der);
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

/// The largest UDP payload MTU discovery tries: a full 1500-byte Ethernet
/// frame over IPv4 (quinn's default, 1452, leaves room for IPv6 headers;
/// over IPv6 the probes above 1452 are lost and discovery settles there).
pub const MAX_UDP_PAYLOAD: u16 = 1500 - 20 - 8;

fn transport() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MAX_UDP_PAYLOAD);
    transport.mtu_discovery_config(Some(mtu));
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
    let provider = provider();
    let mut crypto = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(AnyPeerCertificate(provider)))
        .with_single_cert(vec![cert], key)?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(crypto)
        .map_err(|e| EndpointError::Quic(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport());
    Ok(config)
}

fn client_config(identity: &TlsIdentity) -> Result<quinn::ClientConfig, EndpointError> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key_der.clone()));
    let cert = CertificateDer::from(identity.cert_der.clone());
    let provider = provider();
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyPeerCertificate(provider)))
        .with_client_auth_cert(vec![cert], key)?;
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
    let bind_err = |source| EndpointError::Bind { addr, source };
    let socket = std::net::UdpSocket::bind(addr).map_err(bind_err)?;
    grow_socket_buffers(&socket);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| EndpointError::Quic("no async runtime for QUIC".to_owned()))?;
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server_config(identity)?),
        socket,
        runtime,
    )
    .map_err(bind_err)?;
    endpoint.set_default_client_config(client_config(identity)?);
    Ok(endpoint)
}

/// What the UDP socket asks for as its receive and send buffers.
///
/// The operating system's default receive buffer (208 KiB on Linux, less on
/// Windows) holds under 2 ms of a gigabit stream: a downloader busy hashing
/// and writing for a moment drops datagrams, and every drop costs a
/// retransmission and a congestion-window cut. 8 MiB holds about 65 ms at
/// 1 Gbit. The kernel may grant less (Linux caps it at `net.core.rmem_max`
/// and `wmem_max`); the endpoint works with whatever it gets.
pub const SOCKET_BUFFER_BYTES: usize = 8 << 20;

fn grow_socket_buffers(socket: &std::net::UdpSocket) {
    let socket = socket2::SockRef::from(socket);
    if let Err(err) = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!("cannot grow the UDP receive buffer: {err}");
    }
    if let Err(err) = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES) {
        tracing::debug!("cannot grow the UDP send buffer: {err}");
    }
    tracing::debug!(
        receive = ?socket.recv_buffer_size(),
        send = ?socket.send_buffer_size(),
        "UDP socket buffers"
    );
}

/// The name the client asks for; every lanspread certificate carries it.
pub const SERVER_NAME: &str = "lanspread.local";

/// Accepts any peer certificate, server's or client's (there is no
/// authority at a LAN party), but verifies the handshake signature, so the
/// connection is encrypted to, and the peer id proven by, the holder of
/// that certificate's key.
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

impl ClientCertVerifier for AnyPeerCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls12_signature(self, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        ServerCertVerifier::verify_tls13_signature(self, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ServerCertVerifier::supported_verify_schemes(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_asks_for_larger_buffers_than_the_default() {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let sock = socket2::SockRef::from(&socket);
        let before = sock.recv_buffer_size().unwrap();
        grow_socket_buffers(&socket);
        let after = sock.recv_buffer_size().unwrap();
        // The kernel may cap it (Linux: net.core.rmem_max), never below
        // what it had; where the cap allows, it is at least what we asked.
        assert!(after > before, "receive buffer {before} -> {after}");
        assert!(sock.send_buffer_size().unwrap() > 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn mtu_discovery_reaches_a_full_ethernet_frame() {
        let identity = TlsIdentity::generate().unwrap();
        let localhost = "127.0.0.1:0".parse().unwrap();
        let server = open_endpoint(localhost, &identity).unwrap();
        let client = open_endpoint(localhost, &identity).unwrap();
        let addr = server.local_addr().unwrap();
        let accept = tokio::spawn(async move {
            let connection = server.accept().await.unwrap().await.unwrap();
            let (mut send, _recv) = connection.accept_bi().await.unwrap();
            send.write_all(&vec![7u8; 4 << 20]).await.unwrap();
            send.finish().unwrap();
            connection.closed().await;
        });
        let connection = client.connect(addr, SERVER_NAME).unwrap().await.unwrap();
        let (mut send, mut recv) = connection.open_bi().await.unwrap();
        send.write_all(b"go").await.unwrap();
        let data = recv.read_to_end(8 << 20).await.unwrap();
        assert_eq!(data.len(), 4 << 20);
        // Loopback carries any size: discovery climbs to the upper bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while connection.stats().path.current_mtu < MAX_UDP_PAYLOAD {
            assert!(
                std::time::Instant::now() < deadline,
                "MTU stuck at {}",
                connection.stats().path.current_mtu
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(connection.stats().path.current_mtu, 1472);
        connection.close(VarInt::from_u32(0), b"done");
        accept.await.unwrap();
    }
}
