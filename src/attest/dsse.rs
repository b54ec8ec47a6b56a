//! DSSE envelopes (the signing wrapper in-toto uses): the payload, its type, and signatures over
//! the pre-authentication encoding of both, so a signature can never be moved to another type.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// Base64 of the payload bytes.
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    /// Base64 of the signature bytes (an SSH signature blob, or a binary OpenPGP signature).
    pub sig: String,
}

/// `DSSEv1 <len(type)> <type> <len(body)> <body>`: what is signed.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    pub fn new(payload_type: &str, payload: &[u8], signatures: Vec<Signature>) -> Envelope {
        Envelope {
            payload_type: payload_type.to_owned(),
            payload: STANDARD.encode(payload),
            signatures,
        }
    }

    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        STANDARD
            .decode(self.payload.as_bytes())
            .map_err(|e| format!("its DSSE payload is not base64: {e}"))
    }

    /// The bytes each signature covers.
    pub fn signed_bytes(&self) -> Result<Vec<u8>, String> {
        Ok(pae(&self.payload_type, &self.payload_bytes()?))
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, String> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| format!("a signature is not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pae_is_the_dsse_v1_encoding() {
        // The example of the DSSE specification (protocol.md).
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }

    #[test]
    fn an_envelope_round_trips_its_payload() -> Result<(), String> {
        let e = Envelope::new("t", b"{\"a\":1}", vec![]);
        let back: Envelope = serde_json::from_str(&e.to_json()).map_err(|e| e.to_string())?;
        assert_eq!(back.payload_bytes()?, b"{\"a\":1}");
        assert_eq!(back.signed_bytes()?, b"DSSEv1 1 t 7 {\"a\":1}".to_vec());
        assert!(!e.to_json().contains("keyid"));
        Ok(())
    }

    proptest! {
        /// Different (type, payload) pairs never share the bytes a signature covers.
        #[test]
        fn pae_is_injective(a in ".{0,12}", b in proptest::collection::vec(any::<u8>(), 0..12),
                            c in ".{0,12}", d in proptest::collection::vec(any::<u8>(), 0..12)) {
            if (a.as_str(), b.as_slice()) != (c.as_str(), d.as_slice()) {
                prop_assert_ne!(pae(&a, &b), pae(&c, &d));
            }
        }
    }
}
