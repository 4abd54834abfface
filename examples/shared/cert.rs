//! The certificate a TLS example serves: the PEM chain and key named on
//! its command line, or a self-signed one for `localhost` and 127.0.0.1
//! made at start and written to a temporary file for the client to trust
//! (removed when the example exits).

use weft::io::tls::pki_types::{CertificateDer, PrivateKeyDer};
use weft::io::tls::{self, TlsServerBuilder};

/// A server certificate and the file a client trusts to verify it.
pub struct ServerCert {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// The PEM file a client trusts (`-CAfile`, `--cacert`).
    pub ca_file: String,
    made: bool,
}

impl ServerCert {
    /// Loads `cert` and `key` (both or neither); without them, makes a
    /// self-signed certificate whose file is named after `example`. The
    /// error is the message and the exit code (2: bad arguments).
    pub fn load_or_make(
        example: &str,
        cert: Option<&String>,
        key: Option<&String>,
    ) -> Result<ServerCert, (String, u8)> {
        match (cert, key) {
            (Some(cert), Some(key)) => {
                let chain = tls::load_certs(cert).map_err(|e| (e.to_string(), 2))?;
                let key = tls::load_key(key).map_err(|e| (e.to_string(), 2))?;
                Ok(ServerCert {
                    chain,
                    key,
                    ca_file: cert.clone(),
                    made: false,
                })
            }
            (Some(_), None) => Err(("give both CERT.pem and KEY.pem, or neither".into(), 2)),
            _ => Self::self_signed(example).map_err(|e| (e, 1)),
        }
    }

    fn self_signed(example: &str) -> Result<ServerCert, String> {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
        let path = std::env::temp_dir().join(format!("weft-{example}-{}.pem", std::process::id()));
        std::fs::write(&path, made.cert.pem())
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(ServerCert {
            chain: vec![made.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(made.key_pair.serialize_der().into()),
            ca_file: path.display().to_string(),
            made: true,
        })
    }

    /// A server configuration builder serving this certificate.
    pub fn builder(&self) -> TlsServerBuilder {
        TlsServerBuilder::new().cert(self.chain.clone(), self.key.clone_key())
    }
}

impl Drop for ServerCert {
    fn drop(&mut self) {
        if self.made {
            let _ = std::fs::remove_file(&self.ca_file);
        }
    }
}
