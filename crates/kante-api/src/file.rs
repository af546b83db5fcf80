//! The file API's entry types (`X-LXD-type`): one enum for the daemon and
//! its clients.

/// What a path in an instance is, as the file API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
}

impl FileKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
        }
    }

    /// The header's value; an absent (empty) one means a file, as in LXD.
    pub fn parse(s: &str) -> Option<FileKind> {
        match s {
            "" | "file" => Some(FileKind::File),
            "directory" => Some(FileKind::Directory),
            "symlink" => Some(FileKind::Symlink),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FileKind;

    #[test]
    fn names_round_trip() {
        for k in [FileKind::File, FileKind::Directory, FileKind::Symlink] {
            assert_eq!(FileKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(FileKind::parse(""), Some(FileKind::File));
        assert_eq!(FileKind::parse("fifo"), None);
    }
}
