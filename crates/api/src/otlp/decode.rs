//! OTLP/HTTP request bodies: content type, compression and decoding, and the
//! error responses OTLP clients expect (`google.rpc.Status` in the request's
//! encoding).

use actix_web::{HttpResponse, http::StatusCode};
use opentelemetry_proto::tonic::collector::{
    metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
};
use prost::Message;
use std::io::Read;

/// How a request's body (and so its response) is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From `Content-Type`: `application/x-protobuf` (also what exporters
    /// send with no type at all) or `application/json`.
    pub fn of(content_type: Option<&str>) -> Result<Encoding, OtlpError> {
        let essence = content_type
            .map(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .unwrap_or_default();
        match essence.as_str() {
            "" | "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
            "application/json" => Ok(Encoding::Json),
            other => Err(OtlpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Encoding::Protobuf,
                format!(
                    "unsupported Content-Type `{other}`: OTLP/HTTP takes application/x-protobuf or application/json"
                ),
            )),
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

/// `google.rpc.Status`, the body of an OTLP error response.
#[derive(Clone, PartialEq, Message, serde::Serialize)]
pub struct Status {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
}

/// gRPC's INVALID_ARGUMENT, the code OTLP/HTTP uses for a bad request.
const INVALID_ARGUMENT: i32 = 3;
/// gRPC's RESOURCE_EXHAUSTED (too large).
const RESOURCE_EXHAUSTED: i32 = 8;
/// gRPC's UNAVAILABLE (retry later).
const UNAVAILABLE: i32 = 14;

/// An OTLP request that cannot be accepted, answered as OTLP says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OtlpError {
    pub status: StatusCode,
    pub encoding: Encoding,
    pub message: String,
}

impl OtlpError {
    pub fn new(status: StatusCode, encoding: Encoding, message: impl Into<String>) -> Self {
        OtlpError {
            status,
            encoding,
            message: message.into(),
        }
    }

    pub fn bad(encoding: Encoding, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, encoding, message)
    }

    /// The database failed: 503, which OTLP exporters retry with backoff.
    pub fn unavailable(encoding: Encoding) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            encoding,
            "the service cannot store spans right now; retry later",
        )
    }
}

impl actix_web::ResponseError for OtlpError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let code = match self.status {
            StatusCode::PAYLOAD_TOO_LARGE => RESOURCE_EXHAUSTED,
            s if s.is_server_error() => UNAVAILABLE,
            _ => INVALID_ARGUMENT,
        };
        let status = Status {
            code,
            message: self.message.clone(),
        };
        let mut builder = HttpResponse::build(self.status);
        builder.content_type(self.encoding.content_type());
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            builder.insert_header(("Retry-After", "5"));
        }
        match self.encoding {
            Encoding::Protobuf => builder.body(status.encode_to_vec()),
            Encoding::Json => builder.json(status),
        }
    }
}

/// The body as sent, decompressed per `Content-Encoding` (gzip, deflate or
/// none), at most `limit` bytes once decompressed.
pub fn decompress(
    body: &[u8],
    content_encoding: Option<&str>,
    limit: usize,
    encoding: Encoding,
) -> Result<Vec<u8>, OtlpError> {
    let too_large = || {
        OtlpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            encoding,
            format!("the decompressed body is larger than {limit} bytes"),
        )
    };
    let read_all = |reader: &mut dyn Read, name: &str| -> Result<Vec<u8>, OtlpError> {
        let mut out = Vec::new();
        // One byte more than the limit tells "too large" from "exactly the limit".
        reader
            .take(limit as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| OtlpError::bad(encoding, format!("the body is not valid {name}: {e}")))?;
        if out.len() > limit {
            return Err(too_large());
        }
        Ok(out)
    };
    match content_encoding
        .map(|e| e.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("identity") => {
            if body.len() > limit {
                return Err(too_large());
            }
            Ok(body.to_vec())
        }
        Some("gzip") | Some("x-gzip") => read_all(&mut flate2::read::GzDecoder::new(body), "gzip"),
        Some("deflate") => read_all(&mut flate2::read::ZlibDecoder::new(body), "deflate"),
        Some(other) => Err(OtlpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            encoding,
            format!("unsupported Content-Encoding `{other}`: use gzip, deflate or none"),
        )),
    }
}

/// Decodes an `ExportTraceServiceRequest`.
pub fn traces(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, OtlpError> {
    decode(body, encoding, "ExportTraceServiceRequest")
}

/// Decodes an `ExportMetricsServiceRequest`.
pub fn metrics(body: &[u8], encoding: Encoding) -> Result<ExportMetricsServiceRequest, OtlpError> {
    decode(body, encoding, "ExportMetricsServiceRequest")
}

fn decode<T: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    encoding: Encoding,
    what: &str,
) -> Result<T, OtlpError> {
    match encoding {
        // An empty body is an empty request: OTLP answers it with success.
        _ if body.is_empty() => Ok(T::default()),
        Encoding::Protobuf => T::decode(body).map_err(|e| {
            OtlpError::bad(encoding, format!("the body is not a protobuf {what}: {e}"))
        }),
        Encoding::Json => serde_json::from_slice(body).map_err(|e| {
            OtlpError::bad(
                encoding,
                format!("the body is not an OTLP/JSON {what}: {e}"),
            )
        }),
    }
}

/// A success response in the request's encoding: `message` encoded as it
/// is, or as OTLP/JSON (whose `partialSuccess` is left out when empty).
pub fn respond<T: Message + serde::Serialize>(message: &T, encoding: Encoding) -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    builder.content_type(encoding.content_type());
    match encoding {
        Encoding::Protobuf => builder.body(message.encode_to_vec()),
        Encoding::Json => {
            let mut value = serde_json::to_value(message).unwrap_or(serde_json::Value::Null);
            if let Some(obj) = value.as_object_mut() {
                obj.retain(|_, v| !v.is_null());
            }
            if !value.is_object() {
                value = serde_json::json!({});
            }
            builder.json(value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn content_types_map_to_encodings() {
        #[rustfmt::skip]
        let cases: &[(Option<&str>, Option<Encoding>)] = &[
            (None, Some(Encoding::Protobuf)),
            (Some("application/x-protobuf"), Some(Encoding::Protobuf)),
            (Some("application/json; charset=utf-8"), Some(Encoding::Json)),
            (Some("text/plain"), None),
        ];
        for (header, want) in cases {
            assert_eq!(Encoding::of(*header).ok(), *want, "{header:?}");
        }
    }

    #[test]
    fn gzip_is_decompressed_within_the_limit() -> Result<(), Box<dyn std::error::Error>> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&[7u8; 1000])?;
        let packed = gz.finish()?;
        let out = decompress(&packed, Some("gzip"), 1000, Encoding::Protobuf)?;
        assert_eq!(out.len(), 1000);
        #[rustfmt::skip]
        let refused: [(&[u8], &str, usize, StatusCode); 3] = [
            (&packed, "gzip", 999, StatusCode::PAYLOAD_TOO_LARGE),
            (b"not gzip", "gzip", 999, StatusCode::BAD_REQUEST),
            (b"x", "br", 999, StatusCode::UNSUPPORTED_MEDIA_TYPE),
        ];
        for (body, encoding, limit, want) in refused {
            match decompress(body, Some(encoding), limit, Encoding::Json) {
                Err(e) => assert_eq!(e.status, want, "{encoding}: {e}"),
                Ok(_) => panic!("{encoding} with limit {limit} was accepted"),
            }
        }
        Ok(())
    }
}
