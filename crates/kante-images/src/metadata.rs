//! `metadata.yaml` parsing and validation.

use kante_api::image::ImageMetadata;

use crate::error::ImageError;

/// Parses an image's `metadata.yaml`; `architecture` and `creation_date` are required
/// (LXD refuses images without them too).
pub fn parse_metadata(yaml: &str) -> Result<ImageMetadata, ImageError> {
    let meta: ImageMetadata =
        serde_yaml::from_str(yaml).map_err(|e| ImageError::InvalidMetadata(e.to_string()))?;
    if meta.architecture.trim().is_empty() {
        return Err(ImageError::InvalidMetadata(
            "metadata.yaml has no architecture".into(),
        ));
    }
    if meta.creation_date <= 0 {
        return Err(ImageError::InvalidMetadata(
            "metadata.yaml has no creation_date".into(),
        ));
    }
    Ok(meta)
}

pub(crate) fn parse_metadata_bytes(bytes: &[u8]) -> Result<ImageMetadata, ImageError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| ImageError::InvalidMetadata("metadata.yaml is not valid UTF-8".into()))?;
    parse_metadata(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_public_image_metadata() {
        let m = parse_metadata(
            "architecture: x86_64\ncreation_date: 1700000000\nproperties:\n  os: debian\n\
             templates:\n  /etc/hostname:\n    when: [create, copy]\n    template: hostname.tpl\n",
        )
        .unwrap();
        assert_eq!(m.properties["os"], "debian");
        assert_eq!(m.templates["/etc/hostname"].template, "hostname.tpl");
    }

    #[test]
    fn rejects_missing_fields_and_garbage() {
        let e = parse_metadata("creation_date: 1700000000\n").unwrap_err();
        assert!(e.to_string().contains("architecture"), "{e}");
        let e = parse_metadata("architecture: x86_64\n").unwrap_err();
        assert!(e.to_string().contains("creation_date"), "{e}");
        let e = parse_metadata("architecture: [unclosed\n").unwrap_err();
        assert!(matches!(e, ImageError::InvalidMetadata(_)));
        let e = parse_metadata("architecture: x86_64\ncreation_date: soon\n").unwrap_err();
        assert!(matches!(e, ImageError::InvalidMetadata(_)));
        assert!(parse_metadata_bytes(&[0xff, 0xfe]).is_err());
    }
}
