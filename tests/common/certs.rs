//! Test certificates made with rcgen: a CA, server and client leaves,
//! an expired one.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use weft::io::tls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate authority for tests.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A leaf: its chain (leaf, then the CA) and its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

fn dn(name: &str) -> DistinguishedName {
    // Set explicitly: rcgen's default subject makes a leaf look
    // self-issued, which OpenSSL rejects.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "weft tests");
    dn.push(DnType::CommonName, name);
    dn
}

pub fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = dn(name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

impl Ca {
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    fn leaf_with(&self, names: &[&str], usage: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        self.leaf_keyed(names, usage, expired, KeyPair::generate().unwrap())
    }

    fn leaf_keyed(
        &self,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
        expired: bool,
        key: KeyPair,
    ) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params.distinguished_name = dn(&names[0]);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.der()],
            key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            cert_pem: cert.pem() + &self.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for these names (DNS names or IPs).
    pub fn server(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate with an Ed25519 key: its handshake
    /// signatures always have the same length (ECDSA's vary by a byte or
    /// two), which a simulation's trace of byte counts relies on.
    pub fn ed25519_server(&self, names: &[&str]) -> Leaf {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        self.leaf_keyed(names, ExtendedKeyUsagePurpose::ServerAuth, false, key)
    }

    pub fn expired_server(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, ExtendedKeyUsagePurpose::ServerAuth, true)
    }

    pub fn client(&self, name: &str) -> Leaf {
        self.leaf_with(&[name], ExtendedKeyUsagePurpose::ClientAuth, false)
    }
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        self.key.clone_key()
    }
}
