//! Object name rules (apimachinery's `IsDNS1123Subdomain`, `IsDNS1123Label`, `IsDNS1035Label`,
//! `IsValidPathSegmentName`) with Kubernetes' own error wording, and `generateName` suffixes.

use super::resources::NameRule;

const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const RFC1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";

fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// The error messages for `name` under `rule` (empty when valid).
pub fn validate(rule: NameRule, name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    match rule {
        NameRule::Subdomain => {
            if name.len() > 253 {
                errs.push("must be no more than 253 characters".into());
            }
            if !name.split('.').all(is_label) {
                errs.push(SUBDOMAIN_MSG.into());
            }
        }
        NameRule::Label => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".into());
            }
            if !is_label(name) {
                errs.push(LABEL_MSG.into());
            }
        }
        NameRule::Rfc1035Label => {
            if name.len() > 63 {
                errs.push("must be no more than 63 characters".into());
            }
            if !is_label(name) || !name.as_bytes()[0].is_ascii_lowercase() {
                errs.push(RFC1035_MSG.into());
            }
        }
        NameRule::PathSegment => {
            if name == "." || name == ".." {
                errs.push(format!("may not be '{name}'"));
            } else {
                for bad in ["/", "%"] {
                    if name.contains(bad) {
                        errs.push(format!("may not contain '{bad}'"));
                    }
                }
            }
        }
    }
    errs
}

/// `generateName` plus five random characters from Kubernetes' unambiguous alphabet.
pub fn generate(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut raw = [0u8; 5];
    fill_random(&mut raw);
    let suffix: String = raw
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    // Kubernetes truncates the prefix so the result stays a valid 63-character label.
    let mut keep = prefix.len().min(58);
    while !prefix.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}{suffix}", &prefix[..keep])
}

/// A random (version 4) UUID for metadata.uid.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A random number (allocation starting points).
pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    fill_random(&mut b);
    u64::from_le_bytes(b)
}

fn fill_random(buf: &mut [u8]) {
    // The OS random source failing is not recoverable for uid generation: uids must be unique.
    getrandom::fill(buf).expect("OS random source unavailable");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kubernetes_rules() {
        assert!(validate(NameRule::Subdomain, "my.app-1").is_empty());
        assert!(!validate(NameRule::Subdomain, "My_App").is_empty());
        assert!(!validate(NameRule::Subdomain, "").is_empty());
        assert!(!validate(NameRule::Label, "a.b").is_empty());
        assert!(validate(NameRule::Label, "123-abc").is_empty());
        assert!(!validate(NameRule::Rfc1035Label, "1abc").is_empty());
        assert!(!validate(NameRule::Subdomain, &"a".repeat(254)).is_empty());
        assert!(validate(NameRule::PathSegment, "system:controller:Foo_1").is_empty());
        assert_eq!(
            validate(NameRule::PathSegment, "a/b%c"),
            ["may not contain '/'", "may not contain '%'"]
        );
        assert_eq!(validate(NameRule::PathSegment, ".."), ["may not be '..'"]);
    }

    #[test]
    fn uids_are_uuid_v4() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
        assert!(generate("web-").starts_with("web-"));
        assert_eq!(generate("web-").len(), 9);
    }
}
