//! The challenges of a `WWW-Authenticate` header (RFC 9110 §11.6.1), read
//! as registries write them: Docker Hub's, ghcr.io's and quay.io's Bearer
//! challenges name the realm to get a token from; never assume one.

/// One challenge of a `WWW-Authenticate` header: the scheme and parameter
/// names lowercased, as they compare case-insensitively.
#[derive(Debug, PartialEq, Eq)]
pub struct Challenge {
    pub scheme: String,
    pub params: Vec<(String, String)>,
}

impl Challenge {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The challenges of one header value (RFC 9110 §11.6.1): several can share
/// it, so a comma ends either a parameter or a challenge, told apart by
/// whether a `=` follows the next token.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut cursor = Cursor(header);
    let mut challenges = Vec::new();
    loop {
        // Also skips what is not a token, such as the padding of a token68.
        cursor.skip(|c| !is_tchar(c));
        let Some(scheme) = cursor.token() else {
            return challenges;
        };
        let mut params = Vec::new();
        while let Some(param) = cursor.param() {
            params.push(param);
        }
        challenges.push(Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params,
        });
    }
}

struct Cursor<'a>(&'a str);

impl<'a> Cursor<'a> {
    fn skip(&mut self, skipped: impl Fn(char) -> bool) {
        self.0 = self.0.trim_start_matches(skipped);
    }

    fn eat(&mut self, c: char) -> bool {
        match self.0.strip_prefix(c) {
            Some(rest) => {
                self.0 = rest;
                true
            }
            None => false,
        }
    }

    fn token(&mut self) -> Option<&'a str> {
        let end = self.0.find(|c| !is_tchar(c)).unwrap_or(self.0.len());
        let (token, rest) = self.0.split_at(end);
        self.0 = rest;
        (!token.is_empty()).then_some(token)
    }

    /// The next `name=value` of the current challenge; None, leaving the
    /// cursor where it was, at the next challenge or the end.
    fn param(&mut self) -> Option<(String, String)> {
        let start = self.0;
        self.skip(|c| c == ',' || c.is_ascii_whitespace());
        let name = self.token();
        self.skip(|c| c.is_ascii_whitespace());
        let name = match name {
            Some(name) if self.eat('=') => name,
            _ => {
                self.0 = start;
                return None;
            }
        };
        self.skip(|c| c.is_ascii_whitespace());
        let value = if self.eat('"') {
            self.quoted()
        } else {
            self.token().unwrap_or_default().to_string()
        };
        Some((name.to_ascii_lowercase(), value))
    }

    /// The rest of a quoted string whose opening quote was eaten, unescaped.
    fn quoted(&mut self) -> String {
        let mut value = String::new();
        let mut chars = self.0.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.0 = &self.0[i + 1..];
                    return value;
                }
                '\\' => value.extend(chars.next().map(|(_, escaped)| escaped)),
                c => value.push(c),
            }
        }
        self.0 = "";
        value
    }
}

fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn challenge(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_bearer_challenges_of_docker_hub_ghcr_and_quay_parse() {
        let docker_hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull""#;
        assert_eq!(
            parse_challenges(docker_hub),
            [challenge(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/nginx:pull"),
                ]
            )]
        );
        let ghcr = r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull""#;
        assert_eq!(
            parse_challenges(ghcr)[0].param("realm"),
            Some("https://ghcr.io/token")
        );
        let quay = r#"Bearer realm="https://quay.io/v2/auth",service="quay.io",scope="repository:prometheus/node-exporter:pull""#;
        let quay = &parse_challenges(quay)[0];
        assert_eq!(quay.param("realm"), Some("https://quay.io/v2/auth"));
        assert_eq!(quay.param("service"), Some("quay.io"));
    }

    #[test]
    fn quoted_strings_keep_their_commas_and_lose_their_escapes() {
        let header = r#"BEARER Realm = "https://a.example/token" , Scope="repository:a/b:pull,push", error="say \"no\", twice\\""#;
        assert_eq!(
            parse_challenges(header),
            [challenge(
                "bearer",
                &[
                    ("realm", "https://a.example/token"),
                    ("scope", "repository:a/b:pull,push"),
                    ("error", r#"say "no", twice\"#),
                ]
            )]
        );
    }

    #[test]
    fn several_challenges_share_a_header() {
        let header = r#"Basic realm="Registry, Inc.", Negotiate abc==, Bearer realm="https://r.example/token",service=r.example"#;
        assert_eq!(
            parse_challenges(header),
            [
                challenge("basic", &[("realm", "Registry, Inc.")]),
                challenge("negotiate", &[("abc", "")]),
                challenge(
                    "bearer",
                    &[
                        ("realm", "https://r.example/token"),
                        ("service", "r.example")
                    ]
                ),
            ]
        );
        assert_eq!(parse_challenges("Basic"), [challenge("basic", &[])]);
        assert_eq!(parse_challenges(""), []);
        assert_eq!(
            parse_challenges(r#"Bearer realm="unterminated"#)[0].param("realm"),
            Some("unterminated")
        );
    }
}
