//! Tests of error.rs: every variant and wrapped cause has its status, the
//! message users read is the one they read before, and causes stay reachable.

use std::error::Error as _;
use std::io;

use super::*;

fn io_err(kind: io::ErrorKind, msg: &str) -> io::Error {
    io::Error::new(kind, msg.to_string())
}

#[test]
fn the_engines_own_kinds_have_their_status() {
    let cases = [
        (EngineError::BadRequest("m".into()), 400),
        (EngineError::Forbidden("m".into()), 403),
        (EngineError::NotFound("m".into()), 404),
        (EngineError::Conflict("m".into()), 409),
        (EngineError::PreconditionFailed("m".into()), 412),
        (EngineError::Internal("m".into()), 500),
        (EngineError::NotImplemented("m".into()), 501),
        (EngineError::Unavailable("m".into()), 503),
        (EngineError::InsufficientStorage("m".into()), 507),
        (EngineError::bad("m"), 400),
        (EngineError::internal("m"), 500),
    ];
    for (e, status) in cases {
        assert_eq!(e.status(), status, "{e:?}");
        assert_eq!(e.to_string(), "m");
        assert_eq!(e.kind().status(), status);
    }
}

#[test]
fn store_errors_keep_their_words_and_map_to_their_status() {
    let e = EngineError::from(StoreError::NotFound("Instance \"c1\"".into()));
    assert_eq!(
        (e.status(), e.to_string()),
        (404, "Instance \"c1\" not found".into())
    );
    let e = EngineError::from(StoreError::Conflict("Profile \"p\"".into()));
    assert_eq!(
        (e.status(), e.to_string()),
        (409, "Profile \"p\" already exists".into())
    );
    let e = EngineError::from(StoreError::Unavailable("connection refused".into()));
    assert_eq!(
        (e.status(), e.to_string()),
        (
            503,
            "the cluster's store is unreachable: connection refused".into()
        )
    );
    let e = EngineError::from(StoreError::Closed);
    assert_eq!(
        (e.status(), e.to_string()),
        (500, "the state thread has stopped".into())
    );
    let e = EngineError::from(StoreError::Thread(io_err(
        io::ErrorKind::Other,
        "no threads",
    )));
    assert_eq!(e.status(), 500);
    // The chain: EngineError -> StoreError -> io::Error.
    let store = e.source().expect("the store error is the source");
    assert!(store.downcast_ref::<StoreError>().is_some());
    let io = store.source().expect("the thread's io error");
    assert_eq!(io.to_string(), "no threads");
}

#[test]
fn storage_errors_map_to_their_status() {
    let cases = [
        (StorageError::UnknownDriver("x".into(), "dir".into()), 400),
        (StorageError::InvalidConfig("size".into()), 400),
        (StorageError::InvalidName("a/b".into()), 400),
        (StorageError::InUse("pool p".into()), 400),
        (StorageError::Unsupported("quota".into()), 400),
        (StorageError::Exists("volume v".into()), 409),
        (StorageError::NotFound("volume v".into()), 404),
        (
            StorageError::NoSpace {
                pool: "p".into(),
                what: "image x".into(),
            },
            507,
        ),
        (
            StorageError::Fill {
                volume: "v".into(),
                source: "corrupt".into(),
            },
            400,
        ),
        (StorageError::Command("btrfs failed".into()), 500),
        (StorageError::Stream("cut".into()), 500),
        (
            StorageError::Io {
                what: "reading".into(),
                source: io_err(io::ErrorKind::Other, "boom"),
            },
            500,
        ),
    ];
    for (s, status) in cases {
        let text = s.to_string();
        let e = EngineError::from(s);
        assert_eq!(e.status(), status, "{e:?}");
        assert_eq!(e.to_string(), text);
        assert!(e.source().is_some_and(|c| c.is::<StorageError>()));
    }
}

#[test]
fn network_errors_map_to_their_status() {
    let cases = [
        (NetworkError::NotFound("Network \"n\"".into()), 404),
        (NetworkError::Exists("Network \"n\"".into()), 409),
        (NetworkError::InvalidConfig("x".into()), 400),
        (NetworkError::InvalidDevice("x".into()), 400),
        (NetworkError::Unsupported("x".into()), 400),
        (NetworkError::NoFreeSubnet, 500),
        (
            NetworkError::Command {
                program: "ip".into(),
                message: "failed".into(),
            },
            500,
        ),
    ];
    for (n, status) in cases {
        let text = n.to_string();
        let e = EngineError::from(n);
        assert_eq!((e.status(), e.to_string()), (status, text));
    }
}

#[test]
fn image_errors_keep_lxds_words_and_map_to_their_status() {
    let e = EngineError::from(ImageError::AlreadyExists("ab".into()));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (409, "Image with same fingerprint already exists")
    );
    let e = EngineError::from(ImageError::NotFound("ab".into()));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (404, "Image not found")
    );
    for (i, status) in [
        (ImageError::Corrupt("x".into()), 400),
        (ImageError::InvalidFingerprint("x".into()), 400),
        (ImageError::TooLarge("x".into()), 400),
        (ImageError::InvalidLimit("x".into()), 500),
        (ImageError::TimedOut("x".into()), 500),
        (ImageError::Build("x".into()), 500),
    ] {
        let text = i.to_string();
        let e = EngineError::from(i);
        assert_eq!((e.status(), e.to_string()), (status, text));
    }
}

#[test]
fn names_syntax_runtime_and_tasks_map_to_their_status() {
    let e = EngineError::from(kante_api::names::validate_instance_name("-x").unwrap_err());
    assert_eq!(e.status(), 400);
    assert!(e
        .to_string()
        .contains("must not start with a digit or a dash"));
    let e = EngineError::from(SyntaxError("invalid size \"x\"".into()));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "invalid size \"x\"")
    );
    let e = EngineError::from(RuntimeError::Start("no init".into()));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (500, "starting the container failed: no init")
    );
    let e = EngineError::failed(ImageError::InvalidLimit("x".into()));
    assert_eq!(e.status(), 500);
    assert!(e.source().is_some_and(|c| c.is::<ImageError>()));
}

#[tokio::test]
async fn a_failed_task_is_internal_and_says_so() {
    let join = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
    let e = EngineError::from(join);
    assert_eq!(e.status(), 500);
    assert!(e.to_string().starts_with("background task failed: "));
    assert!(e.source().is_some());
}

#[test]
fn io_errors_keep_their_source_and_context() {
    let e = EngineError::io(
        "reading metadata.yaml",
        io_err(io::ErrorKind::PermissionDenied, "denied"),
    );
    assert_eq!(e.to_string(), "reading metadata.yaml: denied");
    assert_eq!(e.status(), 500);
    let source = e.source().expect("the io error is kept");
    let io = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), io::ErrorKind::PermissionDenied);

    // Without a context, the message is the io error's own (as before).
    let e = EngineError::from(io_err(io::ErrorKind::Other, "plain"));
    assert_eq!(e.to_string(), "plain");
    assert!(e.source().is_some());

    let r: std::result::Result<(), io::Error> = Err(io_err(io::ErrorKind::Other, "x"));
    let e = r.map_err(EngineError::io_ctx("opening /a")).unwrap_err();
    assert_eq!(e.to_string(), "opening /a: x");
}

#[test]
fn a_full_filesystem_is_insufficient_storage() {
    for kind in [io::ErrorKind::StorageFull, io::ErrorKind::QuotaExceeded] {
        let e = EngineError::io("writing", io::Error::from(kind));
        assert_eq!(e.status(), 507);
    }
    let e = EngineError::from(io::Error::from_raw_os_error(28)); // ENOSPC
    assert_eq!(e.status(), 507);
}

#[test]
fn module_errors_map_to_their_status() {
    use crate::operations::OperationError;
    for (o, status, text) in [
        (OperationError::NotFound, 404, "Operation not found"),
        (
            OperationError::SocketTaken,
            409,
            "Websocket already connected",
        ),
        (OperationError::BadSecret, 403, "Invalid websocket secret"),
        (
            OperationError::NotCancellable,
            400,
            "This operation can't be cancelled",
        ),
    ] {
        let e = EngineError::from(o);
        assert_eq!((e.status(), e.to_string().as_str()), (status, text));
    }
    let e = EngineError::from(ConfigError::UnknownKey("foo.bar".into()));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Unknown configuration key: foo.bar")
    );
    let e = EngineError::from(ConfigError::Value {
        key: "limits.cpu".into(),
        source: SyntaxError("invalid limits.cpu \"x\"".into()),
    });
    assert_eq!(
        e.to_string(),
        "Invalid value for limits.cpu: invalid limits.cpu \"x\""
    );
    assert_eq!(e.status(), 400);
    // The chain reaches the syntax error under the config error.
    let config = e.source().expect("the config error");
    assert!(config
        .source()
        .is_some_and(|c| c.downcast_ref::<SyntaxError>().is_some()));
}

#[test]
fn device_errors_are_refusals_and_keep_their_cause() {
    use crate::devices::DeviceError;
    let e = EngineError::from(DeviceError::NoType("eth0".into()));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Device \"eth0\" has no type")
    );
    let e = EngineError::from(DeviceError::invalid("d", "disk path must be absolute"));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Device \"d\": disk path must be absolute")
    );
    // A cause that is a 404 on its own is a refusal of the device.
    let cause = StorageError::NotFound("volume v".into());
    let e = EngineError::from(DeviceError::cause("d")(cause));
    assert_eq!(
        (e.status(), e.to_string().as_str()),
        (400, "Device \"d\": volume v not found")
    );
    let device = e.source().expect("the device error");
    let engine = device.source().expect("its cause");
    assert!(engine
        .downcast_ref::<EngineError>()
        .is_some_and(|c| c.status() == 404 && c.source().is_some_and(|s| s.is::<StorageError>())));
}

#[test]
fn file_errors_map_to_their_status_and_keep_the_io_cause() {
    use crate::instance::files::FileError;
    let denied = || io_err(io::ErrorKind::PermissionDenied, "EACCES");
    for (f, status, text) in [
        (
            FileError::NotFound(io::Error::from(io::ErrorKind::NotFound)),
            404,
            "No such file or directory",
        ),
        (
            FileError::Escapes(io_err(io::ErrorKind::Other, "ELOOP")),
            400,
            "Path escapes the instance's root",
        ),
        (FileError::IsDirectory, 400, "Path is a directory"),
        (FileError::Exists, 409, "Path already exists"),
        (
            FileError::NotADirectory,
            409,
            "Path exists and is not a directory",
        ),
        (FileError::NotEmpty, 400, "Directory is not empty"),
        (
            FileError::PermissionDenied(denied()),
            403,
            "Permission denied: EACCES",
        ),
        (
            FileError::NotRegular,
            400,
            "Path is not a regular file, a directory or a symlink",
        ),
    ] {
        let e = EngineError::from(f);
        assert_eq!((e.status(), e.to_string().as_str()), (status, text));
    }
    let e = EngineError::from(FileError::PermissionDenied(denied()));
    let file = e.source().expect("the file error");
    assert!(file.source().is_some_and(|c| c.is::<io::Error>()));
}
