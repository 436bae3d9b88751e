//! The identifiers of a client certificate as Vault's cert auth writes them into a login's
//! metadata: the serial number in decimal, and the subject and authority key identifiers as
//! colon-separated lowercase hex (`certutil.GetHexFormatted(id, ":")`), empty when absent.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

/// What Vault's login metadata says about the leaf.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CertIds {
    /// The serial number, decimal (`serial_number`).
    pub serial_decimal: String,
    /// The subject key identifier, `aa:bb:…` (`subject_key_id`).
    pub subject_key_id: String,
    /// The authority key identifier's key id, `aa:bb:…` (`authority_key_id`).
    pub authority_key_id: String,
}

fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The identifiers of a DER certificate; `None` if it does not parse (the TLS layer verified
/// it already, so that does not happen for a connection's leaf).
pub fn of_der(der: &[u8]) -> Option<CertIds> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let mut ids = CertIds {
        serial_decimal: cert.tbs_certificate.serial.to_string(),
        ..CertIds::default()
    };
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ids.subject_key_id = colon_hex(k.0),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                if let Some(k) = &a.key_identifier {
                    ids.authority_key_id = colon_hex(k.0);
                }
            }
            _ => {}
        }
    }
    Some(ids)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn colon_hex_is_lowercase_pairs() {
        assert_eq!(colon_hex(&[0x0a, 0xff, 0x00]), "0a:ff:00");
        assert_eq!(colon_hex(&[]), "");
    }

    #[test]
    fn a_leaf_gives_its_decimal_serial_and_the_key_id_of_its_issuer() {
        let pki = keep_test_support::TestPki::new();
        let ids = of_der(&pki.client.der).unwrap();
        // 16 serial bytes fit a u128: the decimal text computed another way.
        let serial = u128::from_be_bytes(pki.client.serial.as_slice().try_into().unwrap());
        assert_eq!(ids.serial_decimal, serial.to_string());
        assert!(ids.subject_key_id.len() >= 2, "{ids:?}");
        // The leaf's authority key id is its issuer's subject key id.
        let issuer = of_der(&pki.intermediate.der).unwrap();
        assert_eq!(ids.authority_key_id, issuer.subject_key_id);
        assert_ne!(ids.subject_key_id, issuer.subject_key_id);
    }
}
