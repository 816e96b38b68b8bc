//! The web client (`web/`, served at `/` of the HTTP listener, talking WebSocket on `/ws`) in a real
//! browser: headless Chromium driven over WebDriver (`webdriver.rs`). Each test has one chromedriver;
//! each browser user is a session of their own (own profile, own localStorage). The tests assert on what
//! the page shows and on what TCP peers receive.
//!
//! Screenshots of the main screens, at a desktop's and a phone's width, go to `$CLUSTERCHAT_SCREENSHOTS`
//! when it is set (`CLUSTERCHAT_SCREENSHOTS=docs/screenshots cargo test --test integration browser`
//! refreshes the README's); otherwise they are taken and checked, not kept.

use std::path::PathBuf;
use std::time::Duration;

use clusterchat::protocol::frame::Separator;
use serde_json::{Value, json};

use crate::support::{
    ANY_PORT, Backend, Conn, Db, Nginx, Redis, Server, TestCa, recv_until, recv_within, user,
};
use crate::webdriver::{Driver, ENTER, Session};

const DESKTOP: (u32, u32) = (1280, 800);
const PHONE: (u32, u32) = (360, 740);

/// A node with an HTTP listener (on the same port after a restart); returns the node and the page's
/// URL.
fn web_node(db_url: &str, extra: &[&str]) -> (Server, String) {
    let mut args = vec!["--http", ANY_PORT];
    args.extend_from_slice(extra);
    let node = Server::start_on(db_url, &args);
    let url = format!("http://{}/", node.http_addr());
    (node, url)
}

fn screen(s: &Session) -> String {
    s.script("return document.body.dataset.screen", json!([]))
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Registers `name` (password "pw") in the page at `url` and waits until it is logged in; returns the
/// user id the page shows.
fn register(s: &Session, url: &str, name: &str) -> i64 {
    s.goto(url);
    s.wait_for("the login screen", |s| (screen(s) == "login").then_some(()));
    s.click("[data-test=show-register]");
    s.type_into("[data-test=reg-name]", name);
    s.type_into("[data-test=reg-password]", "pw");
    s.click("[data-test=reg-submit]");
    s.wait_for("the main screen after registering", |s| {
        (screen(s) == "main").then_some(())
    });
    let detail = s.texts("[data-test=me-detail]").concat();
    assert_eq!(s.texts("[data-test=me]"), [name]);
    detail
        .strip_prefix("user #")
        .and_then(|d| d.split(' ').next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("the page shows the user id: {detail:?}"))
}

/// The texts of the messages the open conversation shows, oldest first.
fn messages(s: &Session) -> Vec<String> {
    s.texts("[data-test=msg] [data-test=msg-text]")
}

/// Waits until the open conversation's last message is `text`, with the status `status` when it is
/// one's own (`None`: someone else's, no status).
fn wait_last_message(s: &Session, text: &str, status: Option<&str>) {
    s.wait_for(&format!("{text:?} as the last message ({status:?})"), |s| {
        let v = s.script(
            "const all = document.querySelectorAll('[data-test=msg]'); const m = all[all.length - 1]; \
             return m ? [m.querySelector('[data-test=msg-text]').textContent, \
                         m.querySelector('[data-test=msg-status]')?.dataset.status ?? null] : null",
            json!([]),
        );
        (v == json!([text, status])).then_some(())
    });
}

fn open_conv(s: &Session, conv: &str) {
    s.click("[data-test=tab-chats]");
    s.click(&format!("[data-test=conv][data-conv={conv}] button"));
    s.wait_for(&format!("conversation {conv} open"), |s| {
        s.visible("[data-test=composer]").then_some(())
    });
}

/// Where screenshots go: `$CLUSTERCHAT_SCREENSHOTS` (relative to the repository), or nowhere (they
/// are still taken and checked).
fn shots_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CLUSTERCHAT_SCREENSHOTS")?);
    let dir = if dir.is_relative() {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(dir)
    } else {
        dir
    };
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    Some(dir)
}

/// Saves `name`-desktop.png and `name`-phone.png of what the page shows; `phone_view` is the pane a
/// phone shows (list, chat, members). Leaves the page at the desktop's width.
fn screenshots(s: &Session, name: &str, phone_view: &str) {
    let dir = shots_dir();
    for (suffix, (w, h), mobile) in [("desktop", DESKTOP, false), ("phone", PHONE, true)] {
        s.set_viewport(w, h, mobile);
        // Toasts come and go; the screens are what matters.
        s.script(
            "if (arguments[1]) document.body.dataset.view = arguments[0]; \
             document.querySelectorAll('[data-test=toast]').forEach(t => t.remove())",
            json!([phone_view, mobile]),
        );
        // Two frames: the new layout is painted.
        s.script(
            "return new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))",
            json!([]),
        );
        let png = s.screenshot();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        if let Some(dir) = &dir {
            std::fs::write(dir.join(format!("{name}-{suffix}.png")), png).expect("save screenshot");
        }
    }
    s.set_viewport(DESKTOP.0, DESKTOP.1, false);
}

/// Two browser users register, become friends by request, chat both ways, see typing and read
/// receipts and unread counts; one reloads and finds the chat he was in open again (and the list, once
/// he went back to it), and still sees the history, older messages loading as they scroll up; the server goes away (banner, the message waits and says so) and comes back (sent once).
#[test]
fn two_users_befriend_chat_reload_and_survive_a_restart() {
    let db = Db::fresh(Backend::Sqlite);
    let (mut server, url) = web_node(&db.url, &[]);
    let driver = Driver::start();
    let a = driver.session(DESKTOP.0, DESKTOP.1);
    let b = driver.session(DESKTOP.0, DESKTOP.1);

    a.goto(&url);
    a.wait_for("the login screen", |s| (screen(s) == "login").then_some(()));
    screenshots(&a, "login", "list");
    let alice = register(&a, &url, "alice");
    let bob = register(&b, &url, "bob");

    // A friend request, found by name, with a word.
    a.click("[data-test=tab-friends]");
    a.type_into("[data-test=find-name]", "bob");
    a.click("[data-test=find-submit]");
    a.wait_texts("bob found", "[data-test=found] .name", |t| {
        t == [format!("bob #{bob}")]
    });
    a.type_into("[data-test=request-text]", "hi, it's alice");
    a.click("[data-test=request-send]");
    a.wait_texts(
        "the request among alice's own",
        "[data-test=outgoing]",
        |t| t.len() == 1 && t[0].contains("bob"),
    );
    b.wait_texts("the request badge", "[data-test=requests-badge]", |t| {
        t == ["1"]
    });
    b.click("[data-test=tab-friends]");
    b.wait_texts(
        "alice's request, with its word",
        "[data-test=incoming]",
        |t| t.len() == 1 && t[0].contains("alice") && t[0].contains("hi, it's alice"),
    );
    screenshots(&b, "friends", "list");
    b.click(&format!(
        "[data-test=incoming][data-id='{alice}'] [data-test=accept]"
    ));
    b.wait_texts(
        "alice among bob's friends",
        "[data-test=friend] .name",
        |t| t == [format!("alice #{alice}")],
    );
    a.wait_texts(
        "bob among alice's friends",
        "[data-test=friend] .name",
        |t| t == [format!("bob #{bob}")],
    );
    assert_eq!(
        a.attrs("[data-test=friend] [data-test=presence]", "data-state"),
        ["online"]
    );
    assert!(b.texts("[data-test=incoming]").is_empty());

    // Chat both ways, with typing and read receipts.
    a.click(&format!(
        "[data-test=friend][data-id='{bob}'] [data-test=chat-with]"
    ));
    b.click(&format!(
        "[data-test=friend][data-id='{alice}'] [data-test=chat-with]"
    ));
    assert_eq!(a.texts("[data-test=chat-title]"), ["bob"]);
    a.type_into("[data-test=composer]", "hello b");
    b.wait_texts("alice typing", "[data-test=typing]", |t| {
        t == ["alice is typing…"]
    });
    a.type_into("[data-test=composer]", "ob");
    a.click("[data-test=send]");
    wait_last_message(&b, "hello bob", None);
    // Bob's page shows it, so it reads it; alice sees the receipt.
    wait_last_message(&a, "hello bob", Some("read"));
    b.wait_texts(
        "no typing once the message came",
        "[data-test=typing]",
        |t| t == [""],
    );
    b.type_into("[data-test=composer]", &format!("hi alice{ENTER}"));
    wait_last_message(&a, "hi alice", None);
    wait_last_message(&b, "hi alice", Some("read"));
    assert_eq!(messages(&a), ["hello bob", "hi alice"]);
    assert_eq!(messages(&b), ["hello bob", "hi alice"]);
    a.type_into("[data-test=composer]", &format!("lunch at noon?{ENTER}"));
    wait_last_message(&b, "lunch at noon?", None);
    b.type_into(
        "[data-test=composer]",
        &format!("sure, see you there{ENTER}"),
    );
    wait_last_message(&a, "sure, see you there", None);
    wait_last_message(&b, "sure, see you there", Some("read"));
    screenshots(&b, "chat", "chat");

    // Bob reloads: still logged in (the resume token), the conversation still there. His page also
    // resends what its outbox holds, with its cid: here his last message, as if its ack had been lost
    // (it was committed): the server answers with the first ack and delivers nothing again.
    let conv_a = format!("u{alice}");
    let cid = b
        .attrs(&format!("[data-test=msg][data-from='{bob}']"), "data-cid")
        .pop()
        .expect("bob's last message has a cid");
    assert_eq!(cid.len(), 24, "{cid}");
    b.script(
        "localStorage.setItem('clusterchat.outbox.' + arguments[0], \
         JSON.stringify([{cid: arguments[1], conv: arguments[2], msg: 'sure, see you there'}]))",
        json!([bob, cid, conv_a]),
    );
    b.refresh();
    b.wait_for("bob logged in again after the reload", |s| {
        (screen(s) == "main").then_some(())
    });
    assert_eq!(b.texts("[data-test=me]"), ["bob"]);
    b.wait_for("the outbox emptied by the resend's ack", |s| {
        (s.script(
            "return localStorage.getItem('clusterchat.outbox.' + arguments[0])",
            json!([bob]),
        ) == Value::Null)
            .then_some(())
    });
    b.wait_texts(
        "the conversation with alice",
        "[data-test=conv-name]",
        |t| t == ["alice"],
    );
    // The chat he was in is open again. On a phone he goes back to the list (a desktop always shows
    // the open chat, and a chat on screen is read), so that what alice writes next waits unread.
    b.wait_for("the chat with alice open again", |s| {
        let open = s.attrs("[data-test=conv].current", "data-conv");
        (open == [conv_a.as_str()] && s.visible("[data-test=composer]")).then_some(())
    });
    b.set_viewport(PHONE.0, PHONE.1, true);
    b.click("[data-test=back]");
    b.wait_for("bob's list, on a phone", |s| {
        (s.visible("[data-test=conv-list]") && !s.visible("[data-test=composer]")).then_some(())
    });
    // Back at the list is where a reload leaves him too, with nothing of the chat loaded.
    b.refresh();
    b.wait_for("bob's list after another reload", |s| {
        (screen(s) == "main" && s.visible("[data-test=conv-list]")).then_some(())
    });
    assert!(!b.visible("[data-test=composer]"), "no chat open");

    // Meanwhile alice writes 40 more from a terminal (a v2 device of hers over TCP): bob's list counts
    // them as unread.
    let mut tcp = server.connect(Separator::Newline);
    let ack = tcp.req(json!({"msgid": 1, "id": alice, "password": "pw", "v": 2, "device": "tcp"}));
    assert_eq!(ack["errno"], 0, "{ack}");
    for i in 1..=40 {
        let ack = tcp.req(
            json!({"msgid": 6, "toid": bob, "msg": format!("line {i}"), "cid": format!("t{i}")}),
        );
        assert_eq!(ack["msgid"], 16, "{ack}");
    }
    b.wait_texts(
        "40 unread from alice",
        &format!("[data-test=conv][data-conv={conv_a}] [data-test=unread]"),
        |t| t == ["40"],
    );
    assert_eq!(
        b.attrs(
            &format!("[data-test=conv][data-conv={conv_a}] [data-test=presence]"),
            "data-state"
        ),
        ["online"]
    );
    // Opening it shows the latest and marks them read; scrolling up loads the rest of the history.
    open_conv(&b, &conv_a);
    wait_last_message(&b, "line 40", None);
    b.wait_for("the unread count gone", |s| {
        s.texts(&format!(
            "[data-test=conv][data-conv={conv_a}] [data-test=unread]"
        ))
        .is_empty()
        .then_some(())
    });
    let shown = messages(&b).len();
    assert!(shown < 44, "only the latest page at first, not {shown}");
    b.wait_for("the whole history after scrolling up", |s| {
        s.script(
            "const m = document.querySelector('[data-test=messages]'); m.scrollTop = 0; \
             m.dispatchEvent(new Event('scroll'))",
            json!([]),
        );
        (messages(s).len() == 44).then_some(())
    });
    // Alice had read up to bob's last message before his reload; the conversation list he got after it
    // says so, so his messages show as read.
    b.wait_texts(
        "bob's messages read, from the list after the reload",
        &format!("[data-test=msg][data-from='{bob}'] [data-test=msg-status]"),
        |t| t == ["read", "read"],
    );
    let mut all: Vec<String> = [
        "hello bob",
        "hi alice",
        "lunch at noon?",
        "sure, see you there",
    ]
    .map(String::from)
    .to_vec();
    all.extend((1..=40).map(|i| format!("line {i}")));
    assert_eq!(messages(&b), all);
    assert_eq!(
        b.texts("[data-test=history-top]"),
        ["The beginning of the conversation"]
    );
    b.set_viewport(DESKTOP.0, DESKTOP.1, false);
    // Alice's terminal sees bob's receipt for the last line.
    let (receipt, _) = recv_until(&mut tcp, 23);
    assert_eq!(
        receipt,
        json!({"msgid": 23, "conv": format!("u{bob}"), "id": bob, "read": 44})
    );
    wait_last_message(&a, "line 40", Some("read"));
    assert_eq!(
        messages(&a)
            .iter()
            .filter(|m| *m == "sure, see you there")
            .count(),
        1,
        "the resend was not delivered again"
    );
    drop(tcp);

    a.assert_no_errors();
    b.assert_no_errors();

    // The server goes away: a banner; what alice writes waits, says so, and goes once it is back.
    server.kill9();
    a.wait_for("the banner", |s| {
        s.visible("[data-test=banner]").then_some(())
    });
    assert!(
        a.texts("[data-test=banner-text]")[0].contains("Cannot reach the server"),
        "{:?}",
        a.texts("[data-test=banner-text]")
    );
    a.type_into("[data-test=composer]", "while you were away");
    a.click("[data-test=send]");
    wait_last_message(&a, "while you were away", Some("failed"));
    assert_eq!(
        a.texts("[data-test=msg-status]").last().unwrap(),
        "not sent, retrying"
    );
    server.restart();
    a.wait_for("the banner gone", |s| {
        (!s.visible("[data-test=banner]")).then_some(())
    });
    wait_last_message(&a, "while you were away", Some("read"));
    wait_last_message(&b, "while you were away", None);
    assert_eq!(
        messages(&b)
            .iter()
            .filter(|m| *m == "while you were away")
            .count(),
        1
    );
    // The log holds it once too.
    let mut check = server.connect(Separator::Newline);
    let ack =
        check.req(json!({"msgid": 1, "id": bob, "password": "pw", "v": 2, "device": "check"}));
    assert_eq!(ack["errno"], 0, "{ack}");
    let history = check.req(json!({"msgid": 19, "conv": conv_a, "limit": 200}));
    let texts: Vec<&Value> = history["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| &m["msg"])
        .collect();
    assert_eq!(texts.len(), 45, "{history}");
    assert_eq!(texts.last(), Some(&&json!("while you were away")));
    // Alice blocks bob: his next message is refused, and his page says so.
    a.click("[data-test=tab-friends]");
    a.click(&format!(
        "[data-test=friend][data-id='{bob}'] [data-test=block]"
    ));
    a.wait_texts("bob blocked", "[data-test=blocked] .name", |t| {
        t == [format!("bob #{bob}")]
    });
    assert!(a.texts("[data-test=friend]").is_empty());
    b.type_into("[data-test=composer]", &format!("are you there?{ENTER}"));
    wait_last_message(&b, "are you there?", Some("refused"));
    assert_eq!(
        b.texts("[data-test=msg-status]").last().unwrap(),
        "failed: this user does not accept your messages"
    );
    b.click("[data-test=discard]");
    wait_last_message(&b, "while you were away", None);
    // Unblocked, then asked again, and declined this time.
    a.click(&format!(
        "[data-test=blocked][data-id='{bob}'] [data-test=unblock]"
    ));
    a.wait_for("nobody blocked", |s| {
        s.texts("[data-test=blocked]").is_empty().then_some(())
    });
    b.click("[data-test=tab-friends]");
    // Bob's page still lists alice (a block tells him nothing); removing her changes nothing there.
    b.click(&format!(
        "[data-test=friend][data-id='{alice}'] [data-test=remove]"
    ));
    b.wait_for("alice gone from bob's friends", |s| {
        s.texts("[data-test=friend]").is_empty().then_some(())
    });
    b.type_into("[data-test=find-name]", "alice");
    b.click("[data-test=find-submit]");
    b.click("[data-test=request-send]");
    a.wait_texts("bob's new request", "[data-test=incoming] .name", |t| {
        t == [format!("bob #{bob}")]
    });
    a.click(&format!(
        "[data-test=incoming][data-id='{bob}'] [data-test=decline]"
    ));
    b.wait_texts("bob told of the answer", "[data-test=toast]", |t| {
        t.iter().any(|t| t == "alice declined your friend request")
    });
    b.wait_for("bob's request gone", |s| {
        s.texts("[data-test=outgoing]").is_empty().then_some(())
    });
    assert!(a.texts("[data-test=incoming]").is_empty());

    // The reconnection attempts while the server was down are the only errors.
    a.assert_no_errors_but(&["ERR_CONNECTION_REFUSED"]);
    b.assert_no_errors_but(&["ERR_CONNECTION_REFUSED"]);
}

/// A group created and joined in the browser, chatted in with a TCP member, roles changed, a member
/// kicked (the kicked browser says so), renamed, handed over and dissolved by the TCP member.
#[test]
fn group_created_joined_chatted_kicked_and_dissolved() {
    let db = Db::fresh(Backend::Sqlite);
    let (server, url) = web_node(&db.url, &[]);
    let driver = Driver::start();
    let a = driver.session(DESKTOP.0, DESKTOP.1);
    let b = driver.session(DESKTOP.0, DESKTOP.1);
    let alice = register(&a, &url, "alice");
    let bob = register(&b, &url, "bob");
    let (mut carol, carol_id) = user(&server, "carol");

    a.click("[data-test=tab-groups]");
    a.type_into("[data-test=group-name]", "rustaceans");
    a.type_into("[data-test=group-desc]", "Rust fans");
    a.click("[data-test=group-create]");
    a.wait_texts("the new group open", "[data-test=chat-title]", |t| {
        t == ["rustaceans"]
    });
    let gid: i64 = a.attrs("[data-test=group]", "data-id")[0].parse().unwrap();
    let conv = format!("g{gid}");

    b.click("[data-test=tab-groups]");
    b.type_into("[data-test=join-id]", &gid.to_string());
    b.click("[data-test=join-submit]");
    b.wait_texts("the joined group open", "[data-test=chat-title]", |t| {
        t == ["rustaceans"]
    });
    a.wait_texts("bob joined", "[data-test=event]", |t| {
        t == ["bob joined rustaceans"]
    });
    let ack = carol.req(json!({"msgid": 9, "groupid": gid}));
    assert_eq!(ack["errno"], 0, "{ack}");
    a.wait_texts("carol joined", "[data-test=event]", |t| {
        t.last().map(String::as_str) == Some("carol joined rustaceans")
    });

    b.type_into("[data-test=composer]", &format!("hello group{ENTER}"));
    wait_last_message(&b, "hello group", Some("sent"));
    wait_last_message(&a, "hello group", None);
    assert_eq!(a.texts("[data-test=msg-from]").last().unwrap(), "bob");
    let (got, _) = recv_until(&mut carol, 10);
    assert_eq!(
        (&got["msg"], &got["id"], &got["conv"]),
        (&json!("hello group"), &json!(bob), &json!(conv))
    );
    let ack = carol.req(json!({"msgid": 10, "groupid": gid, "msg": "hi from a terminal"}));
    assert_eq!(ack["msgid"], 16, "{ack}");
    wait_last_message(&a, "hi from a terminal", None);
    wait_last_message(&b, "hi from a terminal", None);

    // Members with their roles; carol made an admin.
    a.click("[data-test=members-toggle]");
    a.wait_texts(
        "three members",
        "[data-test=member] [data-test=role]",
        |t| t == ["creator", "normal", "normal"],
    );
    a.click(&format!(
        "[data-test=member][data-id='{carol_id}'] [data-test=make-admin]"
    ));
    let (event, _) = recv_until(&mut carol, 49);
    assert_eq!(
        event,
        json!({"msgid": 49, "groupid": gid, "event": "role", "id": carol_id, "by": alice, "role": "admin"})
    );
    a.wait_texts(
        "carol an admin",
        "[data-test=member] [data-test=role]",
        |t| t == ["creator", "normal", "admin"],
    );
    screenshots(&a, "group-members", "members");

    // Bob kicked: his page says so and lets him write no more.
    a.click(&format!(
        "[data-test=member][data-id='{bob}'] [data-test=kick]"
    ));
    a.wait_texts(
        "two members left",
        "[data-test=member] [data-test=role]",
        |t| t == ["creator", "admin"],
    );
    b.wait_texts("bob told he was removed", "[data-test=toast]", |t| {
        t.iter().any(|t| t == "alice removed you from rustaceans")
    });
    b.wait_for("bob's composer gone", |s| {
        (!s.visible("[data-test=composer]")).then_some(())
    });
    assert_eq!(
        b.texts("[data-test=gone]"),
        ["You are no longer a member of this group."]
    );
    let (event, _) = recv_until(&mut carol, 49);
    assert_eq!(
        event,
        json!({"msgid": 49, "groupid": gid, "event": "kicked", "id": bob, "by": alice})
    );

    // Bob cannot join again until alice lets him back from the list of the removed.
    b.click("[data-test=tab-groups]");
    b.type_into("[data-test=join-id]", &gid.to_string());
    b.click("[data-test=join-submit]");
    b.wait_texts("bob told he cannot join", "[data-test=toast]", |t| {
        t.iter()
            .any(|t| t.contains("you were removed from this group"))
    });
    assert!(!b.visible("[data-test=composer]"));
    a.wait_texts("bob listed as removed", "[data-test=banned-user]", |t| {
        t.len() == 1 && t[0].contains("bob")
    });
    a.click(&format!(
        "[data-test=banned-user][data-id='{bob}'] [data-test=unban]"
    ));
    a.wait_for("the removed list gone", |s| {
        (!s.visible("[data-test=banned]")).then_some(())
    });

    // Bob joins again (the number is still in the field), and leaves by himself (a second click
    // confirms).
    b.click("[data-test=join-submit]");
    b.wait_for("bob's composer back", |s| {
        s.visible("[data-test=composer]").then_some(())
    });
    let (event, _) = recv_until(&mut carol, 49);
    assert_eq!(
        event,
        json!({"msgid": 49, "groupid": gid, "event": "joined", "id": bob, "by": bob})
    );
    a.wait_texts("bob back", "[data-test=member] [data-test=role]", |t| {
        t == ["creator", "normal", "admin"]
    });
    b.click("[data-test=members-toggle]");
    b.click("[data-test=leave]");
    b.wait_texts("leaving asks first", "[data-test=leave]", |t| {
        t == ["Leave: sure?"]
    });
    b.click("[data-test=leave]");
    let (event, _) = recv_until(&mut carol, 49);
    assert_eq!(
        event,
        json!({"msgid": 49, "groupid": gid, "event": "left", "id": bob, "by": bob})
    );
    a.wait_texts("bob left", "[data-test=toast]", |t| {
        t.iter().any(|t| t == "bob left rustaceans")
    });
    a.wait_texts(
        "bob gone again",
        "[data-test=member] [data-test=role]",
        |t| t == ["creator", "admin"],
    );
    b.wait_for("the group gone from bob's list", |s| {
        s.attrs("[data-test=group]", "data-id")
            .is_empty()
            .then_some(())
    });

    // Renamed, then handed over to carol (a second click confirms).
    a.clear("[data-test=rename-name]");
    a.type_into("[data-test=rename-name]", "crabs");
    a.click("[data-test=rename-submit]");
    let (event, _) = recv_until(&mut carol, 49);
    assert_eq!(
        (&event["event"], &event["groupname"], &event["groupdesc"]),
        (&json!("updated"), &json!("crabs"), &json!("Rust fans"))
    );
    a.wait_texts("the new name", "[data-test=chat-title]", |t| t == ["crabs"]);
    let hand = format!("[data-test=member][data-id='{carol_id}'] [data-test=hand-over]");
    a.click(&hand);
    a.wait_texts("the hand-over asks first", &hand, |t| {
        t == ["Hand over: sure?"]
    });
    a.click(&hand);
    let (first, _) = recv_until(&mut carol, 49);
    let (second, _) = recv_until(&mut carol, 49);
    assert_eq!(
        (&first["id"], &first["role"]),
        (&json!(carol_id), &json!("creator"))
    );
    assert_eq!(
        (&second["id"], &second["role"]),
        (&json!(alice), &json!("admin"))
    );
    a.wait_texts(
        "alice an admin now",
        "[data-test=member] [data-test=role]",
        |t| t == ["admin", "creator"],
    );
    assert!(
        !a.visible("[data-test=dissolve]"),
        "only the creator may dissolve"
    );

    // Carol dissolves it: alice's page says so.
    let ack = carol.req(json!({"msgid": 45, "groupid": gid}));
    assert_eq!(ack["errno"], 0, "{ack}");
    a.wait_texts("alice told of the dissolution", "[data-test=toast]", |t| {
        t.iter().any(|t| t == "carol dissolved crabs")
    });
    a.wait_for("the group gone from alice's list", |s| {
        s.attrs("[data-test=group]", "data-id")
            .is_empty()
            .then_some(())
    });
    assert_eq!(a.texts("[data-test=gone]"), ["This group was dissolved."]);
    a.assert_no_errors();
    b.assert_no_errors();
}

/// A browser user on one node and a v1 TCP user (NUL-framed, as the original client) on another, over
/// Redis and MariaDB: both ways, the v1 side getting exactly the original's frame. The browser is a
/// phone's width: one pane at a time.
#[test]
fn browser_and_v1_tcp_user_chat_across_two_nodes() {
    let db = Db::fresh(Backend::Mysql);
    let redis = Redis::start();
    let redis_url = redis.url();
    let (_web, url) = web_node(&db.url, &["--redis", &redis_url]);
    let tcp_node = Server::start(&db, &["--redis", &redis_url]);

    let mut dan = Conn::connect(tcp_node.addr, Separator::Nul);
    let dan_id = dan.register("dan", "pw");
    dan.login(dan_id, "pw", 1);

    let driver = Driver::start();
    let e = driver.session(DESKTOP.0, DESKTOP.1);
    e.set_viewport(PHONE.0, PHONE.1, true);
    let eve = register(&e, &url, "eve");
    e.click("[data-test=tab-friends]");
    e.type_into("[data-test=find-name]", "dan");
    e.click("[data-test=find-submit]");
    e.click("[data-test=found-chat]");
    e.wait_texts("the chat with dan", "[data-test=chat-title]", |t| {
        t == ["dan"]
    });
    assert!(e.visible("[data-test=composer]"));
    assert!(!e.visible("[data-test=conv-list]") && !e.visible("[data-test=find-name]"));
    e.type_into(
        "[data-test=composer]",
        &format!("hello over the bus{ENTER}"),
    );
    wait_last_message(&e, "hello over the bus", Some("sent"));

    let got = recv_within(&mut dan, Duration::from_secs(10));
    // Exactly the original's six fields (the parsed frame lists its keys sorted).
    let keys: Vec<&String> = got.as_object().expect("an object").keys().collect();
    assert_eq!(
        keys,
        ["id", "msg", "msgid", "name", "time", "toid"],
        "{got}"
    );
    assert_eq!(
        (
            &got["msgid"],
            &got["id"],
            &got["name"],
            &got["toid"],
            &got["msg"]
        ),
        (
            &json!(6),
            &json!(eve),
            &json!("eve"),
            &json!(dan_id),
            &json!("hello over the bus")
        )
    );

    dan.send(json!({"msgid": 6, "id": dan_id, "name": "dan", "toid": eve, "msg": "hi from v1 <b>&amp;</b>", "time": "2026-12-01 10:00:00"}));
    wait_last_message(&e, "hi from v1 <b>&amp;</b>", None);
    // User text is text: no element came of it.
    assert_eq!(
        e.script(
            "return document.querySelectorAll('[data-test=msg-text] b').length",
            json!([])
        ),
        json!(0)
    );
    // A v1 user gets no pushes: the page's READ and TYPING reach nobody there, and nothing else came.
    dan.send(json!({"msgid": 99}));
    let reply: Value = dan.recv();
    assert_eq!(
        (&reply["msgid"], &reply["errno"]),
        (&json!(15), &json!(101)),
        "{reply}"
    );
    // Back to the list: the chat gives way to it.
    e.click("[data-test=back]");
    e.wait_for("the list instead of the chat", |s| {
        (s.visible("[data-test=conv-list]") && !s.visible("[data-test=composer]")).then_some(())
    });
    assert_eq!(e.texts("[data-test=conv-name]"), ["dan"]);
    e.assert_no_errors();
}

/// The web client behind nginx with TLS, as in production: the page over `https://`, its WebSocket
/// therefore over `wss://` (a browser refuses plain `ws://` from an https page), proxied to the node;
/// and back in after logging out, by name.
#[test]
fn browser_through_nginx_with_tls() {
    let db = Db::fresh(Backend::Sqlite);
    let node = Server::start(&db, &["--http", ANY_PORT]);
    let ca = TestCa::make();
    let nginx = Nginx::start_with(&[node.addr], &[node.http_addr()], &ca);
    let url = format!("https://127.0.0.1:{}/", nginx.https_addr.port());
    let (mut tom, _) = user(&node, "tom");

    let driver = Driver::start();
    let t = driver.session(DESKTOP.0, DESKTOP.1);
    register(&t, &url, "tina");
    assert_eq!(
        t.script("return location.protocol", json!([])),
        json!("https:")
    );
    t.click("[data-test=tab-friends]");
    t.type_into("[data-test=find-name]", "tom");
    t.click("[data-test=find-submit]");
    t.click("[data-test=found-chat]");
    // Send is offered once there is something to send.
    let send_disabled = |s: &Session| {
        s.script(
            "return document.querySelector('[data-test=send]').disabled",
            json!([]),
        )
    };
    assert_eq!(send_disabled(&t), json!(true), "nothing written yet");
    t.type_into("[data-test=composer]", "   ");
    assert_eq!(send_disabled(&t), json!(true), "only blanks");
    t.type_into("[data-test=composer]", "over wss");
    assert_eq!(send_disabled(&t), json!(false));
    t.clear("[data-test=composer]");
    t.type_into("[data-test=composer]", &format!("over wss{ENTER}"));
    wait_last_message(&t, "over wss", Some("sent"));
    let (got, _) = recv_until(&mut tom, 6);
    assert_eq!(got["msg"], "over wss", "{got}");
    let ack = tom.req(json!({"msgid": 6, "toid": got["id"], "msg": "and back"}));
    assert_eq!(ack["msgid"], 16, "{ack}");
    wait_last_message(&t, "and back", None);

    // A text longer than a message may be is counted, refused with a word, and kept (a textarea's
    // maxlength had cut it without one).
    t.script(
        "const c = document.querySelector('[data-test=composer]'); c.value = 'x'.repeat(16390); \
         c.dispatchEvent(new Event('input'))",
        json!([]),
    );
    assert_eq!(
        t.attrs("[data-test=composer-count]", "class"),
        ["count over"]
    );
    t.type_into("[data-test=composer]", ENTER);
    t.wait_texts("the refusal of a long text", "[data-test=toast]", |t| {
        t.iter().any(|t| t.contains("at most 16,384"))
    });
    let kept = t.script(
        "return document.querySelector('[data-test=composer]').value.length",
        json!([]),
    );
    assert_eq!(kept, json!(16390), "the text stays to be shortened");
    t.clear("[data-test=composer]");

    // Logged out, the page offers the name to log in with again, and the name is enough.
    t.click("[data-test=logout]");
    t.wait_for("the login screen after logging out", |s| {
        (screen(s) == "login").then_some(())
    });
    assert_eq!(
        t.attrs("[data-test=login-error]", "class"),
        ["error notice"]
    );
    assert!(
        t.texts("[data-test=toast]").is_empty(),
        "toasts go with the session"
    );
    t.type_into("[data-test=login-password]", "wrong");
    t.click("[data-test=login-submit]");
    t.wait_texts("a wrong password's words", "[data-test=login-error]", |t| {
        t == ["Wrong name, user id or password."]
    });
    assert_eq!(t.attrs("[data-test=login-error]", "class"), ["error"]);
    t.clear("[data-test=login-password]");
    assert_eq!(
        t.script(
            "return document.querySelector('[data-test=login-id]').value",
            json!([])
        ),
        json!("tina")
    );
    t.type_into("[data-test=login-password]", "pw");
    t.click("[data-test=login-submit]");
    t.wait_for("the main screen after logging in by name", |s| {
        (screen(s) == "main").then_some(())
    });
    assert_eq!(t.texts("[data-test=me]"), ["tina"]);
    // The list shows each conversation's last message, fetched at login (CONVERSATIONS has no texts).
    t.wait_texts(
        "the preview of tom's last message",
        "[data-test=conv-preview]",
        |p| p == ["and back"],
    );
    t.assert_no_errors();
}
