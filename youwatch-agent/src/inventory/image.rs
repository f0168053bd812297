//! Container image references as runtimes report them, split the way Falco's
//! `container.image.repository` and `container.image.tag` present them.

/// `(repository, tag)` of an image reference:
/// `docker.io/bkimminich/juice-shop:v17.1.1` → (`docker.io/bkimminich/juice-shop`, `v17.1.1`);
/// `registry:5000/app` → (`registry:5000/app`, ``); a digest (`repo@sha256:...`) is not a tag.
pub fn split(reference: &str) -> (&str, &str) {
    let without_digest = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(colon) => {
            let colon = last_slash + colon;
            (&without_digest[..colon], &without_digest[colon + 1..])
        }
        None => (without_digest, ""),
    }
}

/// Whether a status `image` is a bare image id (`sha256:...`, as some runtimes report for
/// images pulled by digest) rather than a name worth showing.
pub fn is_bare_id(reference: &str) -> bool {
    reference.starts_with("sha256:") || reference.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_repository_and_tag() {
        for (reference, repo, tag) in [
            (
                "docker.io/bkimminich/juice-shop:v17.1.1",
                "docker.io/bkimminich/juice-shop",
                "v17.1.1",
            ),
            ("bkimminich/juice-shop", "bkimminich/juice-shop", ""),
            ("registry:5000/app", "registry:5000/app", ""),
            ("registry:5000/app:1.2", "registry:5000/app", "1.2"),
            ("nginx@sha256:abcd", "nginx", ""),
            ("nginx:1.27@sha256:abcd", "nginx", "1.27"),
            ("", "", ""),
        ] {
            assert_eq!(split(reference), (repo, tag), "{reference}");
        }
    }

    #[test]
    fn bare_ids_are_recognised() {
        assert!(is_bare_id("sha256:0123"));
        assert!(!is_bare_id("busybox:1.36"));
    }
}
