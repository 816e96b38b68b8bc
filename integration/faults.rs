//! Faults: the database going away and coming back, the embedded store's disk filling up. (A read-only
//! remount cannot be tested this way: the kernel refuses it while the database file is open for writing.)

use std::time::{Duration, Instant};

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{Conn, Mariadb, Server, offline_texts};

/// Repeats `request` until its reply's errno is not 109, for at most `within`.
fn until_available(c: &mut Conn, request: Value, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let reply = c.req(request.clone());
        if reply["errno"] != 109 {
            return reply;
        }
        assert!(Instant::now() < deadline, "still 109 after {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// While the store cannot write: a registration is refused with 109, and so is a chat even between users
/// online on the node (nothing is delivered that is not in the log), and its recipient gets nothing.
fn storing_refused_nothing_delivered(a: &mut Conn, b: &mut Conn, b_id: i64) {
    assert_eq!(
        a.req(json!({"msgid": 4, "name": "dee", "password": "pw"}))["errno"],
        109
    );
    let chat = a.req(json!({"msgid": 6, "toid": b_id, "msg": "not in the log"}));
    assert_eq!(
        (chat["msgid"].clone(), chat["errno"].clone()),
        (json!(15), json!(109)),
        "{chat}"
    );
    b.expect_silence(Duration::from_millis(300));
}

/// Three registered users on `server`: the first two logged in (v2), the third offline.
fn three_users(server: &Server, names: [&str; 3]) -> (Conn, Conn, [i64; 3]) {
    let mut a = server.connect(Separator::Newline);
    let ids = names.map(|name| a.register(name, "pw"));
    a.login(ids[0], "pw", 2);
    let mut b = server.connect(Separator::Newline);
    b.login(ids[1], "pw", 2);
    (a, b, ids)
}

#[test]
fn mysql_stopped_and_restarted() {
    let mut db = Mariadb::start();
    let server = Server::start_on(&db.url(), &[]);
    let (mut a, mut b, [_, b_id, c_id]) = three_users(&server, ["ann", "bob", "cat"]);

    db.stop();
    // What needs the database is refused with 109, never reported as done...
    let reg = a.req(json!({"msgid": 4, "name": "dan", "password": "pw"}));
    assert_eq!(
        (reg["msgid"].clone(), reg["errno"].clone()),
        (json!(5), json!(109)),
        "{reg}"
    );
    let offline = a.req(json!({"msgid": 6, "toid": c_id, "msg": "for later"}));
    assert_eq!(
        (offline["msgid"].clone(), offline["errno"].clone()),
        (json!(15), json!(109))
    );
    assert_eq!(a.req(json!({"msgid": 8, "groupname": "g"}))["errno"], 109);
    let mut c = server.connect(Separator::Newline);
    let login = c.req(json!({"msgid": 1, "id": c_id, "password": "pw", "v": 2}));
    assert_eq!(
        (login["msgid"].clone(), login["errno"].clone()),
        (json!(2), json!(109))
    );
    // ...and so is chat between users online here: nothing is delivered that is not in the log.
    let live = a.req(json!({"msgid": 6, "toid": b_id, "msg": "not in the log"}));
    assert_eq!(live["errno"], 109, "{live}");
    b.expect_silence(Duration::from_millis(300));

    db.start_again();
    // Service resumes by itself.
    let ack = until_available(
        &mut a,
        json!({"msgid": 6, "toid": c_id, "msg": "for later"}),
        Duration::from_secs(30),
    );
    assert_eq!(ack["msgid"], 16);
    let ack = c.login(c_id, "pw", 2);
    assert_eq!(
        offline_texts(&ack),
        vec![json!("for later")],
        "stored exactly once, after the database returned"
    );
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": b_id, "msg": "back"}))["msgid"],
        16
    );
    assert_eq!(b.recv()["msg"], "back");
}

/// A small tmpfs of the test's own (the tests run as root, as `make test` does), unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (make test runs as root)"
        );
        Tmpfs { dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn embedded_store_on_a_full_disk() {
    let fs = Tmpfs::mount("2m");
    let url = format!("sqlite://{}", fs.dir.path().join("chat.db").display());
    let server = Server::start_on(&url, &[]);
    let (mut a, mut b, [_, b_id, c_id]) = three_users(&server, ["amy", "ben", "cid"]);

    // Fill the disk.
    let filler = fs.dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 * 1024 * 1024]);
    let big = "x".repeat(16_000);
    let mut refused = false;
    for _ in 0..200 {
        let reply = a.req(json!({"msgid": 6, "toid": c_id, "msg": big}));
        if reply["errno"] == 109 {
            refused = true;
            break;
        }
        assert_eq!(reply["msgid"], 16, "{reply}");
    }
    assert!(refused, "a full disk never made storing fail");
    storing_refused_nothing_delivered(&mut a, &mut b, b_id);

    // Space again: writes work again by themselves.
    std::fs::remove_file(&filler).unwrap();
    let reg = until_available(
        &mut a,
        json!({"msgid": 4, "name": "dee", "password": "pw"}),
        Duration::from_secs(10),
    );
    assert_eq!(
        (reg["msgid"].clone(), reg["errno"].clone()),
        (json!(5), json!(0))
    );
}

/// The embedded store's files made unwritable while the node runs. A read-only remount cannot be had
/// while the database is open for writing (the kernel answers EBUSY), so the files are made immutable
/// (`chattr +i`): writes through the descriptors already open then fail with EPERM, where a read-only
/// file system fails them with EROFS, and SQLite reports both as an I/O error.
#[test]
fn embedded_store_made_read_only() {
    // In the build's own directory, not /tmp: tmpfs sets the flag but lets open descriptors write on.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let db = dir.path().join("chat.db");
    let server = Server::start_on(&format!("sqlite://{}", db.display()), &[]);
    let (mut a, mut b, [_, b_id, c_id]) = three_users(&server, ["amy", "ben", "cid"]);
    assert_eq!(
        a.req(json!({"msgid": 6, "toid": c_id, "msg": "before"}))["msgid"],
        16
    );

    let frozen = Immutable::set(&[db.clone(), dir.path().join("chat.db-wal")]);
    let reply = a.req(json!({"msgid": 6, "toid": c_id, "msg": "while frozen"}));
    assert_eq!(reply["errno"], 109, "{reply}");
    storing_refused_nothing_delivered(&mut a, &mut b, b_id);

    // Writable again: storing works again by itself, and only what was acknowledged was stored.
    drop(frozen);
    let after = until_available(
        &mut a,
        json!({"msgid": 6, "toid": c_id, "msg": "after"}),
        Duration::from_secs(10),
    );
    assert_eq!(after["msgid"], 16, "{after}");
    let mut c = server.connect(Separator::Newline);
    let ack = c.login(c_id, "pw", 2);
    assert_eq!(offline_texts(&ack), vec![json!("before"), json!("after")]);
}

/// Files marked immutable (`chattr +i`) until dropped.
struct Immutable(Vec<std::path::PathBuf>);

impl Immutable {
    /// Marks `files` immutable, after checking on a probe beside them that the file system refuses
    /// writes through a descriptor opened before the flag was set.
    fn set(files: &[std::path::PathBuf]) -> Immutable {
        use std::io::Write;
        let probe_path = files[0].with_extension("probe");
        let mut probe = std::fs::File::create(&probe_path).unwrap();
        let probe_guard = Immutable::mark(std::slice::from_ref(&probe_path));
        assert!(
            probe.write_all(b"x").is_err(),
            "the file system of {} lets open files be written despite chattr +i (tmpfs does): \
             this test cannot make the store read-only here",
            probe_path.display()
        );
        drop(probe_guard);
        Immutable::mark(files)
    }

    fn mark(files: &[std::path::PathBuf]) -> Immutable {
        for file in files {
            let status = std::process::Command::new("chattr")
                .arg("+i")
                .arg(file)
                .status()
                .expect("chattr (e2fsprogs)");
            assert!(
                status.success(),
                "chattr +i {} failed: it needs root and a file system with the immutable flag",
                file.display()
            );
        }
        Immutable(files.to_vec())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        for file in &self.0 {
            let _ = std::process::Command::new("chattr")
                .arg("-i")
                .arg(file)
                .status();
        }
    }
}
