//! A completed multipart object's checksum, from its parts' checksums alone (no byte is
//! read again):
//! - `FULL_OBJECT` (CRC32, CRC32C, CRC64NVME; the only kind CRC64NVME has): the CRC of all
//!   the bytes, by combining the parts' CRCs with their lengths;
//! - `COMPOSITE` (the default for the others): the checksum of the concatenated part
//!   checksums, with `-N` for N parts.
//!
//! A whole-object checksum the client sends with CompleteMultipartUpload must match, or the
//! answer is `400 BadDigest`, as from S3.

use s3s::S3ErrorCode;

use crate::embedded::db::PartRow;
use crate::embedded::error::{StoreResult, refuse};
use crate::embedded::meta::Checksums;

/// The object's checksum, or `None` when a part has none for `algorithm`.
pub fn of_parts(parts: &[PartRow], algorithm: &str, kind: Option<&str>) -> Option<Checksums> {
    let full = kind == Some("FULL_OBJECT") || algorithm == "CRC64NVME";
    let value = if full {
        combined_crc(parts, algorithm)?
    } else {
        composite(parts, algorithm)?
    };
    let mut c = Checksums {
        kind: Some(if full { "FULL_OBJECT" } else { "COMPOSITE" }.into()),
        ..Checksums::default()
    };
    c.set(algorithm, value).then_some(c)
}

/// BadDigest when the client declared a checksum for `algorithm` that is not the object's
/// (a composite value may be sent with or without its `-N`).
pub fn check_declared(whole: Option<&Checksums>, algorithm: &str, declared: &Checksums) -> StoreResult<()> {
    let Some(sent) = declared.get(algorithm) else {
        return Ok(());
    };
    let base = |v: &str| v.split('-').next().unwrap_or_default().to_owned();
    let ours = whole.and_then(|w| w.get(algorithm)).map(base);
    if ours.as_deref() != Some(base(sent).as_str()) {
        return Err(refuse(
            S3ErrorCode::BadDigest,
            format!("The {algorithm} you specified did not match the calculated checksum."),
        ));
    }
    Ok(())
}

fn crc_params(algorithm: &str) -> Option<(crc_fast::CrcAlgorithm, usize)> {
    Some(match algorithm {
        "CRC32" => (crc_fast::CrcAlgorithm::Crc32IsoHdlc, 4),
        "CRC32C" => (crc_fast::CrcAlgorithm::Crc32Iscsi, 4),
        "CRC64NVME" => (crc_fast::CrcAlgorithm::Crc64Nvme, 8),
        _ => return None,
    })
}

/// The CRC of the parts' bytes in order: crc(A ‖ B) = combine(crc(A), crc(B), len(B)).
fn combined_crc(parts: &[PartRow], algorithm: &str) -> Option<String> {
    let (crc, width) = crc_params(algorithm)?;
    let mut whole: Option<u64> = None;
    for part in parts {
        let raw = decode_b64(part.checksums.get(algorithm)?)?;
        if raw.len() != width {
            return None;
        }
        let value = raw.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b));
        whole = Some(match whole {
            None => value,
            Some(before) => crc_fast::checksum_combine(crc, before, value, part.size),
        });
    }
    let bytes = whole?.to_be_bytes();
    Some(encode_b64(&bytes[8 - width..]))
}

/// The checksum of the parts' checksums, `-N`.
fn composite(parts: &[PartRow], algorithm: &str) -> Option<String> {
    let mut raw = Vec::new();
    for p in parts {
        raw.extend(decode_b64(p.checksums.get(algorithm)?)?);
    }
    let digest: Vec<u8> = match algorithm {
        "CRC32" => digest::<s3s::crypto::Crc32>(&raw),
        "CRC32C" => digest::<s3s::crypto::Crc32c>(&raw),
        "SHA1" => digest::<s3s::crypto::Sha1>(&raw),
        "SHA256" => digest::<s3s::crypto::Sha256>(&raw),
        _ => return None,
    };
    Some(format!("{}-{}", encode_b64(&digest), parts.len()))
}

fn digest<H: s3s::crypto::Checksum>(bytes: &[u8]) -> Vec<u8> {
    let mut h = H::new();
    h.update(bytes);
    h.finalize().as_ref().to_vec()
}

fn decode_b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn encode_b64(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u32, bytes: &[u8], algorithm: &str) -> PartRow {
        let raw = match algorithm {
            "CRC32" => digest::<s3s::crypto::Crc32>(bytes),
            "CRC32C" => digest::<s3s::crypto::Crc32c>(bytes),
            "CRC64NVME" => digest::<s3s::crypto::Crc64Nvme>(bytes),
            _ => digest::<s3s::crypto::Sha256>(bytes),
        };
        let mut checksums = Checksums::default();
        checksums.set(algorithm, encode_b64(&raw));
        PartRow {
            number,
            blob: None,
            size: bytes.len() as u64,
            etag: String::new(),
            modified: std::time::SystemTime::UNIX_EPOCH,
            checksums,
        }
    }

    /// The combined CRC is the CRC of all the bytes, as computing it in one pass gives.
    #[test]
    fn a_full_object_crc_is_the_crc_of_every_byte() {
        let pieces: [&[u8]; 3] = [&[b'A'; 5000], b"second part", &[7u8; 12345]];
        let whole: Vec<u8> = pieces.concat();
        for algorithm in ["CRC32", "CRC32C", "CRC64NVME"] {
            let parts: Vec<PartRow> = pieces
                .iter()
                .enumerate()
                .map(|(i, p)| part(i as u32 + 1, p, algorithm))
                .collect();
            let got = of_parts(&parts, algorithm, Some("FULL_OBJECT")).unwrap();
            let one_pass = part(1, &whole, algorithm);
            assert_eq!(got.get(algorithm), one_pass.checksums.get(algorithm), "{algorithm}");
            assert_eq!(got.kind.as_deref(), Some("FULL_OBJECT"));
        }
    }

    #[test]
    fn a_composite_checksum_has_its_part_count_and_a_wrong_declared_one_is_bad_digest() {
        let parts = vec![part(1, &[b'A'; 1024], "SHA256")];
        let got = of_parts(&parts, "SHA256", None).unwrap();
        // ceph s3-tests' test_multipart_checksum_sha256: 1 KiB of 'A' as one part.
        assert_eq!(
            got.sha256.as_deref(),
            Some("Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1")
        );
        let declared = |v: &str| Checksums {
            sha256: Some(v.into()),
            ..Checksums::default()
        };
        assert!(
            check_declared(
                Some(&got),
                "SHA256",
                &declared("Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=-1")
            )
            .is_ok()
        );
        assert!(
            check_declared(
                Some(&got),
                "SHA256",
                &declared("Ok6Cs5b96ux6+MWQkJO7UBT5sKPBeXBLwvj/hK89smg=")
            )
            .is_ok()
        );
        assert!(check_declared(Some(&got), "SHA256", &declared("bad")).is_err());
        assert!(check_declared(None, "SHA256", &declared("bad")).is_err());
    }
}
