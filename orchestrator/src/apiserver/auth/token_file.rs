//! `--token-auth-file`: static bearer tokens in Kubernetes' CSV format,
//! `token,user,uid[,"group1,group2"]`, one record a line. Read with Go's `encoding/csv` rules
//! (fields may be quoted, `""` inside quotes is a quote, empty lines are skipped, records may
//! have different lengths); as in kube-apiserver a record with fewer than three fields stops the
//! server, a record with an empty token is skipped with a warning, and a repeated token is
//! warned about and the later record wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::UserInfo;

#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("cannot read token file '{path}': {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("token file '{path}' must have at least 3 columns (token, user name, user uid), found {found}")]
    Columns { path: PathBuf, found: usize },
    #[error("token file '{path}': record on line {line}: {reason}")]
    Csv {
        path: PathBuf,
        line: usize,
        reason: &'static str,
    },
}

/// Tokens and the users they stand for.
#[derive(Clone, Default)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

/// Never prints the tokens, which are secrets.
impl std::fmt::Debug for TokenFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenFile")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<TokenFile, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<TokenFile, TokenFileError> {
        let mut tokens = HashMap::new();
        let records = records(text).map_err(|(line, reason)| TokenFileError::Csv {
            path: path.to_path_buf(),
            line,
            reason,
        })?;
        for (number, record) in records.into_iter().enumerate() {
            if record.len() < 3 {
                return Err(TokenFileError::Columns {
                    path: path.to_path_buf(),
                    found: record.len(),
                });
            }
            if record[0].is_empty() {
                tracing::warn!(
                    "empty token has been found in token file '{}', record number '{}'",
                    path.display(),
                    number + 1
                );
                continue;
            }
            let user = UserInfo {
                name: record[1].clone(),
                uid: record[2].clone(),
                groups: match record.get(3) {
                    Some(groups) => groups.split(',').map(str::to_string).collect(),
                    None => Vec::new(),
                },
                ..UserInfo::default()
            };
            if tokens.insert(record[0].clone(), user).is_some() {
                tracing::warn!(
                    "duplicate token has been found in token file '{}', record number '{}'",
                    path.display(),
                    number + 1
                );
            }
        }
        Ok(TokenFile { tokens })
    }

    /// The user a token stands for.
    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// The records of a CSV text; an error names the line and what is wrong.
fn records(text: &str) -> Result<Vec<Vec<String>>, (usize, &'static str)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while chars.peek().is_some() {
        // Empty lines are not records.
        if matches!(chars.peek(), Some('\n' | '\r')) {
            if chars.next() == Some('\n') {
                line += 1;
            }
            continue;
        }
        let start_line = line;
        let mut record = Vec::new();
        loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err((start_line, "extraneous or missing \" in quoted-field"))
                        }
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            field.push('"');
                        }
                        Some('"') => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            field.push(c);
                        }
                    }
                }
                if !matches!(chars.peek(), None | Some(',' | '\n' | '\r')) {
                    return Err((start_line, "extraneous or missing \" in quoted-field"));
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if matches!(c, ',' | '\n' | '\r') {
                        break;
                    }
                    if c == '"' {
                        return Err((start_line, "bare \" in non-quoted-field"));
                    }
                    field.push(c);
                    chars.next();
                }
            }
            record.push(field);
            match chars.next() {
                Some(',') => continue,
                Some('\r') => {
                    if chars.peek() == Some(&'\n') {
                        chars.next();
                    }
                    line += 1;
                    break;
                }
                Some('\n') => {
                    line += 1;
                    break;
                }
                _ => break,
            }
        }
        out.push(record);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kubernetes_token_files() {
        let text = "t1,alice,u1\n\nt2,bob,u2,\"dev,ops\"\r\n,nobody,u3\nt1,alice2,u4,solo\n";
        let f = TokenFile::parse(Path::new("tokens.csv"), text).unwrap();
        assert_eq!(
            f.lookup("t1").unwrap().name,
            "alice2",
            "the later record wins"
        );
        assert_eq!(f.lookup("t1").unwrap().groups, vec!["solo".to_string()]);
        let bob = f.lookup("t2").unwrap();
        assert_eq!((bob.name.as_str(), bob.uid.as_str()), ("bob", "u2"));
        assert_eq!(bob.groups, vec!["dev".to_string(), "ops".to_string()]);
        assert!(f.lookup("").is_none(), "an empty token is skipped");
        assert!(f.lookup("t3").is_none());
    }

    #[test]
    fn short_records_and_bad_quotes_are_refused_with_kubernetes_wording() {
        let err = TokenFile::parse(Path::new("/etc/t.csv"), "t1,alice\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "token file '/etc/t.csv' must have at least 3 columns (token, user name, user uid), found 2"
        );
        assert!(TokenFile::parse(Path::new("t"), "t1,\"alice,u1\n").is_err());
        assert!(TokenFile::parse(Path::new("t"), "t1,al\"ice,u1\n").is_err());
    }

    #[test]
    fn debug_output_hides_the_tokens() {
        let f = TokenFile::parse(Path::new("t"), "s3cret,alice,1\n").unwrap();
        let shown = format!("{f:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
