//! What the store keeps about an object besides its bytes: plain data, stored as JSON in the
//! metadata database (one column, so adding a field needs no schema migration).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The checksums S3 knows, base64 as on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc64nvme: Option<String>,
    /// `FULL_OBJECT` or `COMPOSITE` (multipart checksums of checksums).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

impl Checksums {
    pub fn from_dto(c: &s3s::dto::Checksum) -> Self {
        Checksums {
            crc32: c.checksum_crc32.clone(),
            crc32c: c.checksum_crc32c.clone(),
            sha1: c.checksum_sha1.clone(),
            sha256: c.checksum_sha256.clone(),
            crc64nvme: c.checksum_crc64nvme.clone(),
            kind: None,
        }
    }

    /// The algorithm name of the (first) checksum kept, as listings show it.
    pub fn algorithm(&self) -> Option<&'static str> {
        [
            (self.crc32.is_some(), "CRC32"),
            (self.crc32c.is_some(), "CRC32C"),
            (self.sha1.is_some(), "SHA1"),
            (self.sha256.is_some(), "SHA256"),
            (self.crc64nvme.is_some(), "CRC64NVME"),
        ]
        .into_iter()
        .find_map(|(present, name)| present.then_some(name))
    }

    pub fn is_empty(&self) -> bool {
        self.algorithm().is_none()
    }

    /// The value kept for `algorithm` (`CRC32`, `CRC32C`, `SHA1`, `SHA256`, `CRC64NVME`).
    pub fn get(&self, algorithm: &str) -> Option<&str> {
        self.slot(algorithm).and_then(|v| v.as_deref())
    }

    /// Keeps `value` for `algorithm`; false for an algorithm S3 does not have.
    pub fn set(&mut self, algorithm: &str, value: String) -> bool {
        match self.slot_mut(algorithm) {
            Some(slot) => {
                *slot = Some(value);
                true
            }
            None => false,
        }
    }

    fn slot(&self, algorithm: &str) -> Option<&Option<String>> {
        match algorithm {
            "CRC32" => Some(&self.crc32),
            "CRC32C" => Some(&self.crc32c),
            "SHA1" => Some(&self.sha1),
            "SHA256" => Some(&self.sha256),
            "CRC64NVME" => Some(&self.crc64nvme),
            _ => None,
        }
    }

    fn slot_mut(&mut self, algorithm: &str) -> Option<&mut Option<String>> {
        match algorithm {
            "CRC32" => Some(&mut self.crc32),
            "CRC32C" => Some(&mut self.crc32c),
            "SHA1" => Some(&mut self.sha1),
            "SHA256" => Some(&mut self.sha256),
            "CRC64NVME" => Some(&mut self.crc64nvme),
            _ => None,
        }
    }
}

/// Content headers, user metadata, tags and the like: everything a GET or HEAD echoes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    /// The `Expires` header as the client sent it (an HTTP date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub website_redirect_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// `x-amz-meta-*`, names lower-cased.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<(String, String)>,
    #[serde(default, skip_serializing_if = "Checksums::is_empty")]
    pub checksums: Checksums,
    /// For a multipart object: each part's size, in order (GET `partNumber=N`, PartsCount).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<u64>,
}

impl ObjectMeta {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serializes")
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }
}

/// What is known of a multipart upload between CreateMultipartUpload and Complete/Abort.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UploadMeta {
    pub object: ObjectMeta,
    /// The algorithm asked for at creation (`x-amz-checksum-algorithm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_algorithm: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checksum_type: Option<String>,
}
