//! TLS on rustls: configurations, certificate loading, and what a
//! protocol learns of a finished handshake (Twisted's `IReactorSSL` and
//! `ITLSTransport`).
//!
//! A TLS connection is the same connection actor running the same
//! [`Protocol`](crate::Protocol) as TCP: rustls' sans-I/O connection sits
//! inside the transport (`layer.rs`), between the socket and the write
//! buffer, so flow control, idle timeouts, supervision and draining are
//! the TCP ones. [`listen_tls`](crate::listen_tls) and
//! [`connect_tls`](crate::connect_tls) start with TLS;
//! [`Conn::start_tls`](crate::Conn::start_tls) upgrades a live plaintext
//! connection, in either role.
//!
//! Owns: the crypto provider weft uses (ring, always chosen explicitly, so
//! a second provider enabled by another dependency never makes a builder
//! panic), PEM loading (rustls-pki-types' `PemObject`), the configuration
//! builders ([`TlsServerBuilder`], [`TlsClientBuilder`]), SNI certificate
//! selection with a default certificate, and the error and handshake
//! report types.
//!
//! Must not touch: sockets or the connection's buffers (`layer.rs` is the
//! only bridge, used by `conn/`).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use rustls;
pub use rustls_pki_types as pki_types;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

pub(crate) mod layer;

/// The crypto provider weft builds every configuration with (ring's).
/// Passed explicitly to `builder_with_provider`: weft never relies on a
/// process-wide default.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a finished handshake negotiated, given to
/// [`Protocol::tls_ready`](crate::Protocol::tls_ready) and kept for
/// [`Conn::tls`](crate::Conn::tls).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The ALPN protocol both sides agreed on, if any.
    pub alpn: Option<Vec<u8>>,
    /// The server name: the one the client sent (SNI) on a server, the
    /// one verified on a client.
    pub server_name: Option<String>,
    /// The protocol version (TLS 1.2 or 1.3).
    pub version: Option<rustls::ProtocolVersion>,
    /// The cipher suite.
    pub cipher_suite: Option<rustls::CipherSuite>,
    /// Whether the session was resumed (no full handshake).
    pub resumed: bool,
    /// The peer's certificate chain, leaf first (empty when the peer sent
    /// none: a client without a certificate).
    pub peer_certificates: Vec<CertificateDer<'static>>,
}

/// A TLS failure: the handshake or a record was refused (an alert from
/// the peer, a certificate that is untrusted, expired or for another
/// name, no common protocol or ALPN, corrupt data). Carries rustls' error.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsError(pub rustls::Error);

// rustls' errors hold no floats or other values without a total equality.
impl Eq for TlsError {}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for TlsError {}

/// Why a TLS configuration could not be built or loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// A file could not be read or is not valid PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The file holds no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(PathBuf),
    /// The server has no certificate at all (neither default nor SNI).
    #[error("a TLS server needs at least one certificate")]
    NoServerCertificate,
    /// Not a valid DNS name or IP address for a TLS server name.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// rustls refused the material (a key that does not match its
    /// certificate, an unsupported key type, an unusable root).
    #[error("rustls refused the TLS material")]
    Rustls(#[from] rustls::Error),
}

fn file_error(path: &Path, e: impl fmt::Display) -> TlsConfigError {
    TlsConfigError::File {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Every certificate in a PEM file, in order (a chain: leaf first).
pub fn load_certs(path: impl AsRef<Path>) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsConfigError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// The first private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: impl AsRef<Path>) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| file_error(path, e))
}

/// A trust store made of every certificate in a PEM file.
pub fn load_roots(path: impl AsRef<Path>) -> Result<RootCertStore, TlsConfigError> {
    roots_from(load_certs(path)?)
}

/// A trust store made of these certificates.
pub fn roots_from(
    certs: impl IntoIterator<Item = CertificateDer<'static>>,
) -> Result<RootCertStore, TlsConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Whether and how a server asks clients for certificates.
#[derive(Clone, Debug, Default)]
pub enum ClientAuth {
    /// No client certificates (the default).
    #[default]
    None,
    /// Ask for one; a client may send none, but one that is sent must
    /// chain to these roots.
    Optional(RootCertStore),
    /// Require one that chains to these roots; a client without is
    /// refused in the handshake.
    Required(RootCertStore),
}

/// Picks the server certificate by the name the client asked for (SNI),
/// falling back to a default certificate for clients that send no name
/// (or a name not configured), where rustls' own SNI resolver refuses
/// them.
#[derive(Debug)]
struct SniResolver {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        hello
            .server_name()
            .and_then(|name| self.by_name.get(&name.to_ascii_lowercase()))
            .or(self.default.as_ref())
            .cloned()
    }
}

/// Builds a server configuration: certificates (a default one and any
/// per-name ones for SNI), ALPN protocols in the server's order of
/// preference, client authentication, and session resumption (TLS 1.3
/// tickets and the TLS 1.2 session cache, both on by default).
///
/// ```
/// use weft_io::tls::TlsServerBuilder;
///
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let chain = vec![cert.cert.der().clone()];
/// let key = weft_io::tls::pki_types::PrivateKeyDer::Pkcs8(
///     cert.key_pair.serialize_der().into(),
/// );
/// let config = TlsServerBuilder::new()
///     .cert(chain, key)
///     .alpn(["h2", "http/1.1"])
///     .build()
///     .unwrap();
/// assert_eq!(config.alpn_protocols.len(), 2);
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug, Default)]
pub struct TlsServerBuilder {
    default: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    sni: Vec<(String, Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: Vec<Vec<u8>>,
    client_auth: ClientAuth,
    no_resumption: bool,
    versions: Option<Vec<&'static rustls::SupportedProtocolVersion>>,
}

impl TlsServerBuilder {
    /// Only these protocol versions (default: TLS 1.2 and 1.3).
    pub fn versions(mut self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        self.versions = Some(versions.to_vec());
        self
    }

    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The default certificate chain (leaf first) and its key: for
    /// clients that send no SNI name or one not given to `sni_cert`.
    pub fn cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.default = Some((chain, key));
        self
    }

    /// The certificate for clients asking for `name` (SNI).
    pub fn sni_cert(
        mut self,
        name: &str,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.sni.push((name.to_ascii_lowercase(), chain, key));
        self
    }

    /// ALPN protocols, most preferred first. A client that offers ALPN
    /// with none of these fails the handshake (`no_application_protocol`).
    pub fn alpn<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// Asks clients for certificates.
    pub fn client_auth(mut self, auth: ClientAuth) -> Self {
        self.client_auth = auth;
        self
    }

    /// Turns session resumption off (every handshake is a full one).
    pub fn no_resumption(mut self) -> Self {
        self.no_resumption = true;
        self
    }

    /// The configuration, shared by every connection of a listener.
    pub fn build(self) -> Result<Arc<ServerConfig>, TlsConfigError> {
        let provider = provider();
        let certified = |chain: Vec<CertificateDer<'static>>, key| {
            CertifiedKey::from_der(chain, key, &provider).map(Arc::new)
        };
        let default = match self.default {
            Some((chain, key)) => Some(certified(chain, key)?),
            None => None,
        };
        let mut by_name = HashMap::new();
        for (name, chain, key) in self.sni {
            by_name.insert(name, certified(chain, key)?);
        }
        if default.is_none() && by_name.is_empty() {
            return Err(TlsConfigError::NoServerCertificate);
        }
        let versions = self.versions.as_deref().unwrap_or(rustls::ALL_VERSIONS);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Optional(roots) | ClientAuth::Required(roots) if roots.is_empty() => {
                return Err(TlsConfigError::Rustls(rustls::Error::General(
                    "client authentication needs at least one trusted root".into(),
                )));
            }
            ClientAuth::Optional(roots) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
            ClientAuth::Required(roots) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| rustls::Error::General(e.to_string()))?,
            ),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SniResolver { by_name, default }));
        config.alpn_protocols = self.alpn;
        if self.no_resumption {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        } else {
            // Stateless tickets (TLS 1.2 and 1.3) on top of the session
            // cache rustls keeps by default.
            config.ticketer = rustls::crypto::ring::Ticketer::new()?;
        }
        Ok(Arc::new(config))
    }
}

/// Builds a client configuration: trust roots, ALPN protocols, an
/// optional client certificate, and session resumption (on by default:
/// connections made with the same configuration resume each other's
/// sessions).
///
/// ```
/// use std::time::Duration;
/// use weft_actors::ActorResult;
/// use weft_io::tls::{roots_from, TlsClientBuilder, TlsServerBuilder};
/// use weft_io::{connect_tls, listen_tls, Conn, ConnectOptions, ListenOptions, Protocol};
///
/// struct Echo;
/// impl Protocol for Echo {
///     type Msg = ();
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         conn.write(data)?;
///         Ok(())
///     }
/// }
///
/// /// Sends a greeting and reports the answer.
/// struct Hello(std::sync::mpsc::Sender<Vec<u8>>);
/// impl Protocol for Hello {
///     type Msg = ();
///     fn connected(&mut self, conn: &mut Conn<'_, '_, Self>) -> ActorResult {
///         conn.write(b"hello over TLS")?;
///         Ok(())
///     }
///     fn data(&mut self, conn: &mut Conn<'_, '_, Self>, data: &[u8]) -> ActorResult {
///         self.0.send(data.to_vec())?;
///         conn.close();
///         Ok(())
///     }
/// }
///
/// let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
/// let chain = vec![cert.cert.der().clone()];
/// let key = weft_io::tls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
/// let server = TlsServerBuilder::new().cert(chain.clone(), key).build().unwrap();
/// // The client trusts the self-signed certificate as its root.
/// let client = TlsClientBuilder::new(roots_from(chain).unwrap()).build().unwrap();
///
/// let rt = weft_runtime::Runtime::builder().build().unwrap();
/// let listening = listen_tls(rt.handle(), "127.0.0.1:0".parse().unwrap(), ListenOptions::new(), server, || Echo).unwrap();
/// let (tx, rx) = std::sync::mpsc::channel();
/// let port = listening.local_addr().port();
/// let options = ConnectOptions::new().server_name("localhost");
/// connect_tls(rt.handle(), ("127.0.0.1", port), options, client, Hello(tx));
/// let mut got = Vec::new();
/// while got.len() < 14 {
///     got.extend(rx.recv_timeout(Duration::from_secs(10)).unwrap());
/// }
/// assert_eq!(got, b"hello over TLS");
/// ```
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug)]
pub struct TlsClientBuilder {
    roots: RootCertStore,
    alpn: Vec<Vec<u8>>,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    no_resumption: bool,
    versions: Option<Vec<&'static rustls::SupportedProtocolVersion>>,
}

impl TlsClientBuilder {
    /// Only these protocol versions (default: TLS 1.2 and 1.3).
    pub fn versions(mut self, versions: &[&'static rustls::SupportedProtocolVersion]) -> Self {
        self.versions = Some(versions.to_vec());
        self
    }

    /// A builder trusting `roots`.
    pub fn new(roots: RootCertStore) -> Self {
        TlsClientBuilder {
            roots,
            alpn: Vec::new(),
            client_cert: None,
            no_resumption: false,
            versions: None,
        }
    }

    /// ALPN protocols to offer, most preferred first.
    pub fn alpn<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<[u8]>,
    {
        self.alpn = protocols.into_iter().map(|p| p.as_ref().to_vec()).collect();
        self
    }

    /// A certificate to present when the server asks for one.
    pub fn client_cert(
        mut self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Self {
        self.client_cert = Some((chain, key));
        self
    }

    /// Turns session resumption off.
    pub fn no_resumption(mut self) -> Self {
        self.no_resumption = true;
        self
    }

    /// The configuration, to share between connections (resumption works
    /// across the connections that share it).
    pub fn build(self) -> Result<Arc<ClientConfig>, TlsConfigError> {
        let versions = self.versions.as_deref().unwrap_or(rustls::ALL_VERSIONS);
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)?
            .with_root_certificates(self.roots);
        let mut config = match self.client_cert {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn;
        if self.no_resumption {
            config.resumption = rustls::client::Resumption::disabled();
        }
        Ok(Arc::new(config))
    }
}

/// Which side of a TLS handshake this end takes, for
/// [`Conn::start_tls`](crate::Conn::start_tls): either role on either kind
/// of connection (a TCP client may be the TLS server).
#[derive(Clone, Debug)]
pub enum TlsRole {
    /// Act as the TLS server.
    Server(Arc<ServerConfig>),
    /// Act as the TLS client, verifying the server as `server_name`.
    Client {
        /// The configuration.
        config: Arc<ClientConfig>,
        /// The name (or IP address) the server's certificate must carry.
        server_name: ServerName<'static>,
    },
}

impl TlsRole {
    /// The client role, verifying the server as `name` (a DNS name or an
    /// IP address).
    pub fn client(config: Arc<ClientConfig>, name: &str) -> Result<Self, TlsConfigError> {
        Ok(TlsRole::Client {
            config,
            server_name: server_name(name)?,
        })
    }
}

/// A TLS server name from a host string (a DNS name or an IP address,
/// with or without IPv6 brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsConfigError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string())
        .map_err(|_| TlsConfigError::InvalidServerName(host.to_string()))
}

/// Why `start_tls` refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartTlsError {
    /// The connection already runs TLS.
    #[error("the connection already uses TLS")]
    AlreadyTls,
    /// The connection is closing or closed.
    #[error("the connection is closing")]
    Closing,
    /// rustls refused the configuration.
    #[error("rustls refused the TLS configuration")]
    Tls(#[from] rustls::Error),
}
