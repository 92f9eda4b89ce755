//! Reading one value out of a small S3 answer: the `<Code>` of an error, the `<UploadId>` of
//! CreateMultipartUpload's result. The proxy looks at the first few KiB of such answers only
//! (they are a few hundred bytes); a cut-off document simply yields nothing.

use quick_xml::events::Event;

/// The text of the first element named `tag` (at any depth), unescaped.
pub fn first_text(xml: &[u8], tag: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut text: Option<String> = None;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf).ok()? {
            Event::Start(e) if text.is_none() && e.local_name().as_ref() == tag.as_bytes() => {
                text = Some(String::new());
            }
            Event::Text(t) => {
                if let Some(text) = text.as_mut() {
                    text.push_str(&t.decode().ok()?);
                }
            }
            // `&amp;` and the like come as references of their own.
            Event::GeneralRef(r) => {
                if let Some(text) = text.as_mut() {
                    let entity = format!("&{};", r.decode().ok()?);
                    text.push_str(&quick_xml::escape::unescape(&entity).ok()?);
                }
            }
            Event::End(_) if text.is_some() => return text,
            Event::Eof => return text.filter(|t| !t.is_empty()),
            _ => {}
        }
        buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::first_text;

    #[test]
    fn finds_the_code_of_an_error_and_the_upload_id_of_a_result() {
        let error = br#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"#;
        assert_eq!(first_text(error, "Code").as_deref(), Some("NoSuchKey"));
        let created = br#"<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>abc&amp;1</UploadId></InitiateMultipartUploadResult>"#;
        assert_eq!(first_text(created, "UploadId").as_deref(), Some("abc&1"));
        assert_eq!(
            first_text(b"<Error><Code>Slow", "Code").as_deref(),
            Some("Slow"),
            "as far as it got"
        );
        assert_eq!(first_text(b"not xml", "Code"), None);
    }
}
