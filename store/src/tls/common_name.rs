//! The subject common name of an X.509 certificate, read straight from its DER encoding: with
//! `--client-cert-auth`, etcd takes a verified client certificate's CN as the user name of a
//! request that carries no token. Only the path to the subject is walked:
//! Certificate → tbsCertificate → [version] serial signature issuer validity subject →
//! RDNs → (2.5.4.3, value).

/// DER tag of a SEQUENCE, a SET, and the explicit `[0]` version field.
const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const VERSION: u8 = 0xa0;
/// The object identifier 2.5.4.3 (id-at-commonName), tag and length included.
const COMMON_NAME_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];

/// One DER element at the start of `b`: (tag, contents, the bytes after it).
fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(b: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, contents, rest) = element(b)?;
    (t == tag).then_some((contents, rest))
}

/// The last common name of the certificate's subject (etcd uses the leaf's CN), if it has one
/// as a string.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut fields = tbs;
    if fields.first() == Some(&VERSION) {
        fields = element(fields)?.2;
    }
    // serial, signature algorithm, issuer, validity: skipped.
    for _ in 0..4 {
        fields = element(fields)?.2;
    }
    let (mut rdns, _) = expect(fields, SEQUENCE)?;
    let mut found = None;
    while !rdns.is_empty() {
        let (set, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (attr, rest) = expect(attrs, SEQUENCE)?;
            attrs = rest;
            if let Some(value) = attr.strip_prefix(COMMON_NAME_OID) {
                let (_, text, _) = element(value)?;
                if let Ok(s) = std::str::from_utf8(text) {
                    found = Some(s.to_string());
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(cn: Option<&str>) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "cairn");
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_the_subject_common_name() {
        assert_eq!(
            common_name(&cert_with(Some("alice"))).as_deref(),
            Some("alice")
        );
        assert_eq!(common_name(&cert_with(None)), None);
        let long = "u".repeat(300);
        assert_eq!(common_name(&cert_with(Some(&long))), Some(long));
    }

    #[test]
    fn garbage_and_truncations_give_none() {
        let der = cert_with(Some("bob"));
        for cut in 0..der.len() {
            let _ = common_name(&der[..cut]);
        }
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
