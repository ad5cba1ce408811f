//! TLS for Tor links (the ORPort and outgoing links) and for the `wss://` listener.
//!
//! Tor does not authenticate relays with the TLS PKI: the link certificate is a throwaway,
//! self-signed certificate, and the peer proves its identity in the CERTS cell, whose
//! SIGNING_V_TLS_CERT certificate (type 5) signs the SHA-256 of that TLS certificate
//! (tor-spec §4.2). So:
//! - the server presents a fresh [`LinkCertificate`] (regenerated at each start) and does not
//!   ask for a client certificate;
//! - the client accepts any server certificate but still checks the TLS handshake signature
//!   with it (so the peer holds the certificate's key), and the link layer compares the
//!   certificate's hash with the CERTS cell ([`TlsLinkInfo::peer_certificate_der`]);
//! - AUTHENTICATE (AUTH0003) binds the link with the RFC 5705 exporter
//!   ([`TlsLinkInfo::export_keying_material`]).
//!
//! TLS 1.2 and 1.3 with the `ring` provider's cipher suites, no ALPN, no session resumption
//! (a resumed session would carry no certificate). The client sends a random SNI host name
//! (`www.<random>.com`), as C tor does.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rand_core::CryptoRng;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, ServerConfig, ServerConnection,
    SignatureScheme,
};
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};

/// Lifetime of a generated link certificate. The certificate is regenerated at each start;
/// Tor peers do not check its dates.
pub const LINK_CERT_LIFETIME: Duration = Duration::from_secs(365 * 86_400);

/// Why TLS could not be set up.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// rustls refused a configuration or a key.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The link certificate could not be generated.
    #[error("cannot generate the link certificate: {0}")]
    CertGen(#[from] rcgen::Error),
    /// A PEM file could not be read or holds no usable item.
    #[error("{path}: {reason}")]
    Pem {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A random SNI name could not be made.
    #[error("invalid SNI host name")]
    BadServerName,
    /// No TLS exporter value can be computed here.
    #[error("no TLS exporter value: {0}")]
    NoExporter(&'static str),
}

/// The ring crypto provider, shared by every configuration.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS certificate and its private key, as presented on Tor links.
#[derive(Debug)]
pub struct LinkCertificate {
    cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl LinkCertificate {
    /// Make a self-signed ECDSA P-256 certificate with random host names (C tor style:
    /// subject `www.<random>.net`, issuer `www.<random>.com`) and a random serial number,
    /// valid from a day before `now` for [`LINK_CERT_LIFETIME`]. The key pair comes from
    /// ring's system RNG; `rng` picks the names and the serial number.
    pub fn generate<R: CryptoRng + ?Sized>(now: SystemTime, rng: &mut R) -> Result<Self, TlsError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let subject = random_hostname(rng, "www.", ".net");
        let issuer = random_hostname(rng, "www.", ".com");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, subject);
        params.distinguished_name = dn;
        let mut serial = [0u8; 8];
        rng.fill_bytes(&mut serial);
        // A positive INTEGER: clear the top bit.
        if let Some(first) = serial.first_mut() {
            *first &= 0x7f;
        }
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
        let start = day_floor(now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now));
        params.not_before = time::OffsetDateTime::from(start);
        params.not_after =
            time::OffsetDateTime::from(start.checked_add(LINK_CERT_LIFETIME).unwrap_or(start));
        // Like C tor's, the certificate names a random issuer other than its subject (peers
        // never check it); it is still signed by its own key.
        let issuer_params = {
            let mut p = rcgen::CertificateParams::new(Vec::<String>::new())?;
            let mut dn = rcgen::DistinguishedName::new();
            dn.push(rcgen::DnType::CommonName, issuer);
            p.distinguished_name = dn;
            p
        };
        let issuer = rcgen::Issuer::new(issuer_params, &key);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(LinkCertificate {
            cert: cert.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// Use a certificate made elsewhere (for instance a legacy type 1 link certificate
    /// signed by the RSA identity), with its PKCS#8 DER private key.
    pub fn from_der(cert_der: Vec<u8>, pkcs8_key_der: Vec<u8>) -> Self {
        LinkCertificate {
            cert: CertificateDer::from(cert_der),
            key: PrivatePkcs8KeyDer::from(pkcs8_key_der),
        }
    }

    /// The certificate, DER-encoded.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.as_ref()
    }

    /// SHA-256 of the DER certificate: what the CERTS type 5 certificate certifies.
    pub fn sha256(&self) -> [u8; 32] {
        Sha256::digest(self.cert.as_ref()).into()
    }

    /// A rustls server configuration presenting this certificate (see the module docs).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )?;
        disable_server_resumption(&mut config);
        Ok(Arc::new(config))
    }
}

fn disable_server_resumption(config: &mut ServerConfig) {
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
}

/// Midnight (UTC) at or before `t`.
fn day_floor(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs - secs % 86_400)
}

/// `prefix` + 8 to 20 random lowercase letters and digits + `suffix` (C tor's
/// `crypto_random_hostname` draws from base32; any DNS-safe letters do).
pub fn random_hostname<R: CryptoRng + ?Sized>(rng: &mut R, prefix: &str, suffix: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut len_byte = [0u8; 1];
    rng.fill_bytes(&mut len_byte);
    let len = 8 + usize::from(len_byte[0] % 13);
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    let mut name = String::with_capacity(prefix.len() + len + suffix.len());
    name.push_str(prefix);
    for b in bytes {
        let c = ALPHABET.get(usize::from(b % 32)).copied().unwrap_or(b'a');
        name.push(char::from(c));
    }
    name.push_str(suffix);
    name
}

/// A rustls client configuration for Tor links: any server certificate, handshake
/// signature checked, no client certificate, no resumption.
pub fn client_config() -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
}

fn client_config_with_versions(
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let verifier = Arc::new(AnyServerCert {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A random SNI name for an outgoing link.
pub fn random_server_name<R: CryptoRng + ?Sized>(
    rng: &mut R,
) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(random_hostname(rng, "www.", ".com")).map_err(|_| TlsError::BadServerName)
}

/// Accepts any server certificate (Tor checks it against the CERTS cell), but checks the
/// TLS handshake signature with its key, using the provider's algorithms.
#[derive(Debug)]
struct AnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyServerCert {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The link TLS setup of a running relay: its link certificate and the server and client
/// configurations.
#[derive(Clone)]
pub struct LinkTls {
    cert: Arc<LinkCertificate>,
    acceptor: tokio_rustls::TlsAcceptor,
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for LinkTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkTls")
            .field("cert_sha256", &hex::encode(self.cert.sha256()))
            .finish_non_exhaustive()
    }
}

impl LinkTls {
    /// Set up with `cert`.
    pub fn new(cert: LinkCertificate) -> Result<Self, TlsError> {
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config()?);
        let connector = tokio_rustls::TlsConnector::from(client_config()?);
        Ok(LinkTls {
            cert: Arc::new(cert),
            acceptor,
            connector,
        })
    }

    /// The link certificate presented to peers.
    pub fn certificate(&self) -> &LinkCertificate {
        &self.cert
    }

    /// Accept a link: the TLS handshake as the server.
    pub async fn accept<IO>(&self, io: IO) -> std::io::Result<tokio_rustls::server::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        self.acceptor.accept(io).await
    }

    /// Open a link: the TLS handshake as the client, with a random SNI name.
    pub async fn connect<IO, R>(
        &self,
        io: IO,
        rng: &mut R,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
        R: CryptoRng + ?Sized,
    {
        let name = random_server_name(rng).map_err(std::io::Error::other)?;
        self.connector.connect(name, io).await
    }
}

/// What the link layer needs from an established TLS connection.
pub trait TlsLinkInfo {
    /// The peer's certificate (DER), if it sent one. A Tor responder always does; a Tor
    /// initiator never does (it authenticates in AUTHENTICATE).
    fn peer_certificate_der(&self) -> Option<&[u8]>;

    /// Fill `out` with RFC 5705 keying material for `label` and `context` (AUTH0003 uses
    /// label `EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003` and a 32-byte context).
    fn export_keying_material(
        &self,
        out: &mut [u8],
        label: &[u8],
        context: Option<&[u8]>,
    ) -> Result<(), TlsError>;
}

impl TlsLinkInfo for ServerConnection {
    fn peer_certificate_der(&self) -> Option<&[u8]> {
        self.peer_certificates()?.first().map(AsRef::as_ref)
    }

    fn export_keying_material(
        &self,
        out: &mut [u8],
        label: &[u8],
        context: Option<&[u8]>,
    ) -> Result<(), TlsError> {
        rustls::ConnectionCommon::export_keying_material(self, out, label, context)?;
        Ok(())
    }
}

impl TlsLinkInfo for ClientConnection {
    fn peer_certificate_der(&self) -> Option<&[u8]> {
        self.peer_certificates()?.first().map(AsRef::as_ref)
    }

    fn export_keying_material(
        &self,
        out: &mut [u8],
        label: &[u8],
        context: Option<&[u8]>,
    ) -> Result<(), TlsError> {
        rustls::ConnectionCommon::export_keying_material(self, out, label, context)?;
        Ok(())
    }
}

impl<IO> TlsLinkInfo for tokio_rustls::server::TlsStream<IO> {
    fn peer_certificate_der(&self) -> Option<&[u8]> {
        self.get_ref().1.peer_certificate_der()
    }

    fn export_keying_material(
        &self,
        out: &mut [u8],
        label: &[u8],
        context: Option<&[u8]>,
    ) -> Result<(), TlsError> {
        self.get_ref().1.export_keying_material(out, label, context)
    }
}

impl<IO> TlsLinkInfo for tokio_rustls::client::TlsStream<IO> {
    fn peer_certificate_der(&self) -> Option<&[u8]> {
        self.get_ref().1.peer_certificate_der()
    }

    fn export_keying_material(
        &self,
        out: &mut [u8],
        label: &[u8],
        context: Option<&[u8]>,
    ) -> Result<(), TlsError> {
        self.get_ref().1.export_keying_material(out, label, context)
    }
}

/// A server configuration for the `wss://` listener from PEM files (a certificate chain,
/// leaf first, and its private key), offering ALPN `http/1.1`.
pub fn wss_server_config(cert_pem: &Path, key_pem: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let pem_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| pem_err(cert_pem, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_err(cert_pem, &e))?;
    if certs.is_empty() {
        return Err(pem_err(cert_pem, &"no CERTIFICATE in file"));
    }
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|e| pem_err(key_pem, &e))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod test {
    use super::*;
    use crate::testing::{TempDir, seeded_rng, test_rng};
    use der::Decode;
    use rustls::server::{ClientHello, ResolvesServerCert};
    use rustls::sign::CertifiedKey;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    const LABEL: &[u8] = b"EXPORTER FOR TOR TLS CLIENT BINDING AUTH0003";

    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (
        std::io::Result<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>,
        std::io::Result<tokio_rustls::server::TlsStream<tokio::io::DuplexStream>>,
    ) {
        let (c, s) = tokio::io::duplex(64 * 1024);
        let name = random_server_name(&mut test_rng()).unwrap();
        let client = tokio_rustls::TlsConnector::from(client).connect(name, c);
        let server = tokio_rustls::TlsAcceptor::from(server).accept(s);
        tokio::join!(client, server)
    }

    #[tokio::test]
    async fn client_sees_server_cert_and_both_export_the_same_secret() {
        let cert = LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap();
        for (version, expected) in [
            (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
            (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        ] {
            let client_cfg = client_config_with_versions(&[version]).unwrap();
            let (c, s) = handshake(cert.server_config().unwrap(), client_cfg).await;
            let (mut c, mut s) = (c.unwrap(), s.unwrap());
            assert_eq!(c.get_ref().1.protocol_version(), Some(expected));
            assert_eq!(c.get_ref().1.alpn_protocol(), None);
            // The client sees the link certificate; a Tor initiator sends none.
            assert_eq!(c.peer_certificate_der(), Some(cert.cert_der()));
            assert_eq!(s.peer_certificate_der(), None);
            assert_eq!(
                Sha256::digest(c.peer_certificate_der().unwrap()).as_slice(),
                cert.sha256()
            );

            let context = [7u8; 32];
            let mut a = [0u8; 32];
            let mut b = [0u8; 32];
            c.export_keying_material(&mut a, LABEL, Some(&context))
                .unwrap();
            s.export_keying_material(&mut b, LABEL, Some(&context))
                .unwrap();
            assert_eq!(a, b, "{expected:?}");
            assert_ne!(a, [0u8; 32]);
            let mut other = [0u8; 32];
            s.export_keying_material(&mut other, b"another label", Some(&context))
                .unwrap();
            assert_ne!(a, other);

            // Application data flows both ways.
            c.write_all(b"VERSIONS").await.unwrap();
            c.flush().await.unwrap();
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"VERSIONS");
            s.write_all(b"CERTS").await.unwrap();
            s.flush().await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"CERTS");
        }
    }

    #[tokio::test]
    async fn link_tls_over_loopback_tcp() {
        let tls =
            LinkTls::new(LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap())
                .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server_tls = tls.clone();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut s = server_tls.accept(tcp).await.unwrap();
            let mut out = [0u8; 32];
            s.export_keying_material(&mut out, LABEL, Some(&[1u8; 32]))
                .unwrap();
            s.write_all(b"ok").await.unwrap();
            s.shutdown().await.unwrap();
            (s.peer_certificate_der().map(<[u8]>::to_vec), out)
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut c = tls.connect(tcp, &mut test_rng()).await.unwrap();
        assert_eq!(c.peer_certificate_der(), Some(tls.certificate().cert_der()));
        let mut ours = [0u8; 32];
        c.export_keying_material(&mut ours, LABEL, Some(&[1u8; 32]))
            .unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ok");
        let (server_peer_cert, theirs) = server.await.unwrap();
        assert_eq!(server_peer_cert, None);
        assert_eq!(ours, theirs);
    }

    /// A server whose certificate does not match the key it signs with.
    #[derive(Debug)]
    struct Mismatched(Arc<CertifiedKey>);

    impl ResolvesServerCert for Mismatched {
        fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(self.0.clone())
        }
    }

    #[tokio::test]
    async fn client_checks_the_handshake_signature() {
        let a = LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap();
        let b = LinkCertificate::generate(SystemTime::now(), &mut test_rng()).unwrap();
        let signer = provider()
            .key_provider
            .load_private_key(PrivateKeyDer::Pkcs8(b.key.clone_key()))
            .unwrap();
        let certified = Arc::new(CertifiedKey::new(vec![a.cert.clone()], signer));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let server = ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(Mismatched(certified.clone())));
            let (c, _s) = handshake(Arc::new(server), client_config().unwrap()).await;
            let err = c.unwrap_err();
            let inner = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
                .unwrap_or_else(|| panic!("{err}"));
            assert!(
                matches!(
                    inner,
                    rustls::Error::InvalidCertificate(rustls::CertificateError::BadSignature)
                ),
                "{version:?}: {inner:?}"
            );
        }
        // The same two halves, matched, work.
        let (c, s) = handshake(b.server_config().unwrap(), client_config().unwrap()).await;
        c.unwrap();
        s.unwrap();
    }

    #[test]
    fn generated_certificates_look_like_c_tor_ones() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600 + 3_600);
        let a = LinkCertificate::generate(now, &mut seeded_rng(1)).unwrap();
        let b = LinkCertificate::generate(now, &mut seeded_rng(2)).unwrap();
        assert_ne!(a.cert_der(), b.cert_der());
        assert_ne!(a.sha256(), b.sha256());
        let cert = x509_cert::Certificate::from_der(a.cert_der()).unwrap();
        let tbs = cert.tbs_certificate();
        let subject = tbs.subject().to_string();
        let issuer = tbs.issuer().to_string();
        assert!(
            subject.starts_with("CN=www.") && subject.ends_with(".net"),
            "{subject}"
        );
        assert!(
            issuer.starts_with("CN=www.") && issuer.ends_with(".com"),
            "{issuer}"
        );
        let validity = tbs.validity();
        assert_eq!(
            validity.not_before.to_unix_duration().as_secs(),
            1_767_225_600 - 86_400
        );
        assert_eq!(
            validity.not_after.to_unix_duration().as_secs(),
            1_767_225_600 - 86_400 + LINK_CERT_LIFETIME.as_secs()
        );
        let serial = tbs.serial_number().as_bytes();
        assert!(!serial.is_empty() && serial.len() <= 9, "{serial:?}");
    }

    #[test]
    fn random_hostnames() {
        let mut rng = seeded_rng(5);
        let mut lens = std::collections::HashSet::new();
        for _ in 0..200 {
            let h = random_hostname(&mut rng, "www.", ".com");
            let mid = h
                .strip_prefix("www.")
                .unwrap()
                .strip_suffix(".com")
                .unwrap();
            assert!((8..=20).contains(&mid.len()), "{h}");
            assert!(
                mid.bytes()
                    .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
            );
            lens.insert(mid.len());
            ServerName::try_from(h).unwrap();
        }
        assert_eq!(lens.len(), 13, "every length from 8 to 20 appears");
        assert_ne!(
            random_hostname(&mut test_rng(), "", ""),
            random_hostname(&mut test_rng(), "", "")
        );
    }

    #[tokio::test]
    async fn wss_config_from_pem_files() {
        let tmp = TempDir::new("wss-pem");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let cert_path = tmp.path().join("cert.pem");
        let key_path = tmp.path().join("key.pem");
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let server = wss_server_config(&cert_path, &key_path).unwrap();
        let mut client = (*client_config().unwrap()).clone();
        client.alpn_protocols = vec![b"http/1.1".to_vec()];
        let (c, s) = handshake(server, Arc::new(client)).await;
        let (c, _s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(c.peer_certificate_der(), Some(cert.der().as_ref()));

        // Missing file, key file given as certificate, certificate given as key.
        let missing = tmp.path().join("missing.pem");
        for (c, k, bad) in [
            (&missing, &key_path, &missing),
            (&cert_path, &missing, &missing),
            (&key_path, &key_path, &key_path),
            (&cert_path, &cert_path, &cert_path),
        ] {
            match wss_server_config(c, k).unwrap_err() {
                TlsError::Pem { path, .. } => assert_eq!(&path, bad),
                e => panic!("{e}"),
            }
        }
    }
}
