//! The subject of an X.509 certificate, read straight from its DER encoding. etcd takes a
//! verified client certificate's CN as the user name of a request without a token; the
//! apiserver takes the CN as the user and the O values as the groups (Kubernetes'
//! `CommonNameUserConversion`). Only the path to the subject is walked:
//! Certificate → tbsCertificate → \[version\] serial signature issuer validity subject →
//! RDNs → (attribute type, value).
//!
//! The certificate is expected to have been verified already: a malformed one yields `None`
//! (never a panic), and an attribute whose value is not a UTF-8 string is skipped.

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
/// The explicit `[0]` version field of a tbsCertificate.
const VERSION: u8 = 0xa0;
/// id-at-commonName (2.5.4.3) and id-at-organizationName (2.5.4.10), tag and length included.
const COMMON_NAME_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x03];
const ORGANIZATION_OID: &[u8] = &[0x06, 0x03, 0x55, 0x04, 0x0a];

/// The subject attributes that name a user.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subject {
    /// The last CN of the subject, as Go's `pkix.Name.CommonName` (and so etcd's user name).
    pub common_name: Option<String>,
    /// Every O value, in order, as Go's `pkix.Name.Organization`.
    pub organizations: Vec<String>,
}

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

/// The subject of a DER certificate; `None` when it cannot be parsed.
pub fn subject(der: &[u8]) -> Option<Subject> {
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
    let mut subject = Subject::default();
    while !rdns.is_empty() {
        let (set, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut attrs = set;
        while !attrs.is_empty() {
            let (attr, rest) = expect(attrs, SEQUENCE)?;
            attrs = rest;
            let text = |value: &[u8]| {
                element(value).and_then(|(_, t, _)| std::str::from_utf8(t).ok().map(String::from))
            };
            if let Some(value) = attr.strip_prefix(COMMON_NAME_OID) {
                if let Some(s) = text(value) {
                    subject.common_name = Some(s);
                }
            } else if let Some(value) = attr.strip_prefix(ORGANIZATION_OID) {
                if let Some(s) = text(value) {
                    subject.organizations.push(s);
                }
            }
        }
    }
    Some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(cn: Option<&str>, orgs: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        for o in orgs {
            params
                .distinguished_name
                .push(rcgen::DnType::OrganizationName, *o);
        }
        if let Some(cn) = cn {
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, cn);
        }
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_common_name_and_organizations() {
        let s = subject(&cert(Some("alice"), &["dev"])).unwrap();
        assert_eq!(s.common_name.as_deref(), Some("alice"));
        assert_eq!(s.organizations, vec!["dev".to_string()]);
        let s = subject(&cert(None, &[])).unwrap();
        assert_eq!(s, Subject::default());
        // A CN long enough to need a multi-byte DER length.
        let long = "u".repeat(300);
        let s = subject(&cert(Some(&long), &["cairn"])).unwrap();
        assert_eq!(s.common_name, Some(long));
    }

    #[test]
    fn garbage_and_truncations_give_none_or_partial_subjects_without_panicking() {
        let der = cert(Some("bob"), &["ops"]);
        for cut in 0..der.len() {
            let _ = subject(&der[..cut]);
        }
        assert_eq!(subject(&[]), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
