//! The request's framing, checked before routing: the length of its URI
//! and of its header section, and its transfer coding (RFC 9110, RFC 9112).
//! hyper only bounds the whole head by its read buffer (about 400 KB);
//! these limits are the host's own, and each refusal is problem+json.

use http::header::TRANSFER_ENCODING;
use http::request::Parts;

use super::Error;
use crate::config::HttpConfig;

/// The framing limits in force.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    max_uri_bytes: usize,
    max_header_bytes: usize,
    max_header_line_bytes: usize,
}

impl From<&HttpConfig> for Framing {
    fn from(http: &HttpConfig) -> Self {
        Self {
            max_uri_bytes: http.max_uri_bytes,
            max_header_bytes: http.max_header_bytes,
            max_header_line_bytes: http.max_header_line_bytes,
        }
    }
}

impl Framing {
    /// Refuses a request whose URI or header section is too long (414,
    /// 431), or whose `transfer-encoding` is anything but one `chunked`
    /// (400, and the connection is closed: a body framed two ways is how
    /// requests are smuggled).
    pub fn check(&self, parts: &Parts) -> Result<(), Error> {
        let uri = parts
            .uri
            .path_and_query()
            .map_or(parts.uri.path().len(), |pq| pq.as_str().len());
        if uri > self.max_uri_bytes {
            return Err(Error::UriTooLong(self.max_uri_bytes));
        }
        let mut total = 0;
        for (name, value) in &parts.headers {
            // `name: value` and its CRLF, as they came on the wire.
            let line = name.as_str().len() + value.len() + 4;
            if line > self.max_header_line_bytes {
                return Err(Error::HeadersTooLarge {
                    what: "one header line",
                    max: self.max_header_line_bytes,
                });
            }
            total += line;
        }
        if total > self.max_header_bytes {
            return Err(Error::HeadersTooLarge {
                what: "the header section",
                max: self.max_header_bytes,
            });
        }
        let mut codings = parts.headers.get_all(TRANSFER_ENCODING).iter();
        if let Some(first) = codings.next() {
            let chunked = first
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
            if !chunked || codings.next().is_some() {
                return Err(Error::TransferCoding);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn framing() -> Framing {
        Framing::from(&HttpConfig::default())
    }

    #[test]
    fn transfer_coding_must_be_one_chunked() {
        for ok in ["chunked", "Chunked", " chunked "] {
            let p = parts("/a", &[("transfer-encoding", ok)]);
            assert!(framing().check(&p).is_ok(), "{ok}");
        }
        for bad in [
            "chunked, chunked",
            "identity, chunked",
            "gzip, chunked",
            "identity",
            "x",
        ] {
            let p = parts("/a", &[("transfer-encoding", bad)]);
            assert!(
                matches!(framing().check(&p), Err(Error::TransferCoding)),
                "{bad}"
            );
        }
        let twice = parts(
            "/a",
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        );
        assert!(matches!(
            framing().check(&twice),
            Err(Error::TransferCoding)
        ));
    }

    #[test]
    fn uri_and_headers_are_bounded() {
        let long_path = format!("/{}", "a".repeat(9_000));
        assert!(matches!(
            framing().check(&parts(&long_path, &[])),
            Err(Error::UriTooLong(_))
        ));
        let long_query = format!("/a?q={}", "a".repeat(9_000));
        assert!(matches!(
            framing().check(&parts(&long_query, &[])),
            Err(Error::UriTooLong(_))
        ));
        let big = "v".repeat(20_000);
        let p = parts("/a", &[("x-big", big.as_str())]);
        assert!(matches!(
            framing().check(&p),
            Err(Error::HeadersTooLarge { .. })
        ));
        let four_k = "v".repeat(4_000);
        let many: Vec<(String, &str)> = (0..10)
            .map(|i| (format!("x-h{i}"), four_k.as_str()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        assert!(matches!(
            framing().check(&parts("/a", &many)),
            Err(Error::HeadersTooLarge {
                what: "the header section",
                ..
            })
        ));
        assert!(framing().check(&parts("/a?q=1", &many[..4])).is_ok());
    }
}
