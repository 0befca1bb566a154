//! The web console's security properties, on every backend: sign-in, the session cookie's
//! flags, CSRF and origin checks on every form, scopes, sign-out, expiry, revocation, and
//! a session shared by two instances on one database. Requests are made as a browser
//! would (cookies, form posts, no redirects followed), against the real app.

use opshub::app::App;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, ORIGIN, SET_COOKIE};
use serde_json::json;

use crate::backend_tests;
use crate::helpers::{Backend, TestApp, test_config};
use crate::procedures::{SETUP, create, deploy_all, exec, state_of};

/// A cookie-carrying client of one console instance.
struct Browser {
    client: reqwest::Client,
    base: String,
    session: Option<String>,
}

struct Page {
    status: u16,
    location: String,
    set_cookies: Vec<String>,
    body: String,
}

impl Page {
    async fn from(r: reqwest::Response) -> Page {
        let header = |name| {
            r.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        let location = header(LOCATION);
        let set_cookies = r
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        let status = r.status().as_u16();
        if status >= 400 {
            assert!(
                header(CONTENT_TYPE).starts_with("text/html"),
                "console errors are HTML pages, got {status} {}",
                header(CONTENT_TYPE)
            );
        }
        Page {
            status,
            location,
            set_cookies,
            body: r.text().await.expect("body"),
        }
    }

    /// The hidden `_csrf` field of the first form on the page.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"_csrf\" value=\"")
            .expect("a form with _csrf")
            + 20;
        self.body[at..]
            .split('"')
            .next()
            .expect("value")
            .to_string()
    }

    fn cookie(&self, name: &str) -> Option<&str> {
        self.set_cookies
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(String::as_str)
    }
}

fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().expect("pair");
    pair.split_once('=').expect("name=value").1.to_string()
}

impl Browser {
    fn new(base: &str) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            session: None,
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.session {
            Some(s) => r.header(COOKIE, format!("opshub_session={s}")),
            None => r,
        }
    }

    async fn get(&self, path: &str) -> Page {
        Page::from(
            self.request(reqwest::Method::GET, path)
                .send()
                .await
                .expect("sent"),
        )
        .await
    }

    /// A form post as the console's own pages send it (same Origin).
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_from(path, fields, &self.base.clone()).await
    }

    async fn post_from(&self, path: &str, fields: &[(&str, &str)], origin: &str) -> Page {
        let body = serde_urlencoded::to_string(fields).expect("form");
        Page::from(
            self.request(reqwest::Method::POST, path)
                .header(ORIGIN, origin)
                .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
                .expect("sent"),
        )
        .await
    }

    /// Signs in through the login form; returns the login answer.
    async fn sign_in(&mut self, token: &str, extra: &[(&str, &str)]) -> Page {
        let form = self.get("/login").await;
        let login_cookie = cookie_value(form.cookie("opshub_login").expect("login cookie"));
        let mut fields = vec![("_csrf", form.csrf()), ("token", token.to_string())];
        fields.extend(extra.iter().map(|(k, v)| (*k, (*v).to_string())));
        let mut req = self
            .client
            .post(format!("{}/login", self.base))
            .header(ORIGIN, &self.base)
            .header(COOKIE, format!("opshub_login={login_cookie}"))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&fields).expect("form"));
        for (k, v) in extra.iter().filter(|(k, _)| k.starts_with("x-")) {
            req = req.header(*k, *v);
        }
        let answer = Page::from(req.send().await.expect("sent")).await;
        if let Some(c) = answer.cookie("opshub_session") {
            self.session = Some(cookie_value(c));
        }
        answer
    }

    /// The CSRF token of the signed-in session (every page's sign-out form carries it).
    async fn csrf(&self) -> String {
        self.get("/").await.csrf()
    }
}

async fn kv_exists(app: &TestApp, key: &str) -> bool {
    let r = app.get(&format!("/api/v1/kv/{key}")).await;
    r.status == 200
}

backend_tests!(
    signed_out_visits_go_to_login_and_bad_tokens_are_refused,
    session_cookie_is_httponly_samesite_strict_and_secure_over_https,
    forms_without_the_session_csrf_token_or_from_elsewhere_change_nothing,
    read_tokens_see_pages_but_every_action_is_refused,
    sign_out_expiry_and_revocation_end_the_session,
    a_session_works_on_every_instance_sharing_the_database,
    procedures_pages_create_deploy_and_roll_back_through_forms,
    read_tokens_see_procedures_but_cannot_deploy_or_roll_back,
    a_drifted_procedure_shows_both_definitions_side_by_side,
);

async fn signed_out_visits_go_to_login_and_bad_tokens_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut b = Browser::new(&app.base);
    let home = b.get("/").await;
    assert_eq!((home.status, home.location.as_str()), (303, "/login"));
    let kv = b.get("/kv?prefix=a").await;
    assert_eq!(kv.location, "/login?next=/kv%3Fprefix%3Da");
    let posted = b.post("/kv/put", &[("key", "a"), ("type", "string")]).await;
    assert_eq!(
        posted.location, "/login?next=/kv/put",
        "a signed-out post acts on nothing"
    );
    assert!(!kv_exists(&app, "a").await);

    let refused = b.sign_in("opshub_not-a-real-token", &[]).await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("That token is not valid"));
    assert!(
        refused.cookie("opshub_session").is_none(),
        "no session for a bad token"
    );

    let ok = b.sign_in(&app.admin_token, &[("next", "/kv")]).await;
    assert_eq!((ok.status, ok.location.as_str()), (303, "/kv"));
    let evil = Browser::new(&app.base)
        .sign_in(&app.admin_token, &[("next", "//evil.example/")])
        .await;
    assert_eq!(evil.location, "/", "next never leaves the site");
    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Dashboard"));
    // The API keeps its JSON errors beside the console's HTML.
    app.get("/api/v1/nothing-here")
        .await
        .assert_error(404, "not_found");
    let missing = b
        .get("/webhooks/01900000-0000-7000-8000-000000000000")
        .await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.contains("<!DOCTYPE html>"));
}

async fn session_cookie_is_httponly_samesite_strict_and_secure_over_https(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let plain = Browser::new(&app.base).sign_in(&app.admin_token, &[]).await;
    let cookie = plain.cookie("opshub_session").expect("session cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP cannot carry a Secure cookie"
    );
    assert!(cookie_value(cookie).len() >= 43, "256 random bits");

    let proxied = Browser::new(&app.base)
        .sign_in(&app.admin_token, &[("x-forwarded-proto", "https")])
        .await;
    let cookie = proxied.cookie("opshub_session").expect("session cookie");
    assert!(cookie.contains("; Secure"), "{cookie}");

    let login = Browser::new(&app.base).get("/login").await;
    let csp = login.body.contains("<script");
    assert!(!csp, "the console sends no script at all");
}

async fn forms_without_the_session_csrf_token_or_from_elsewhere_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut b = Browser::new(&app.base);
    b.sign_in(&app.admin_token, &[]).await;
    let csrf = b.csrf().await;
    fn fields(token: &str) -> Vec<(&str, &str)> {
        vec![
            ("_csrf", token),
            ("key", "guarded"),
            ("type", "integer"),
            ("value", "7"),
            ("is_active", "true"),
        ]
    }
    let missing = b.post("/kv/put", &fields("")[1..]).await;
    assert_eq!(missing.status, 403);
    let wrong = b.post("/kv/put", &fields("forged-token-value")).await;
    assert_eq!(wrong.status, 403);
    let foreign = b
        .post_from("/kv/put", &fields(&csrf), "https://evil.example")
        .await;
    assert_eq!(
        foreign.status, 403,
        "a right token from another origin is refused"
    );
    // Another session's token is no good either.
    let mut other = Browser::new(&app.base);
    other.sign_in(&app.admin_token, &[]).await;
    let crossed = other.post("/kv/put", &fields(&csrf)).await;
    assert_eq!(crossed.status, 403);
    assert!(!kv_exists(&app, "guarded").await, "nothing was written");

    let ok = b.post("/kv/put", &fields(&csrf)).await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let stored = app.get("/api/v1/kv/guarded").await;
    assert_eq!(stored.json["value"], json!(7));
    assert_eq!(
        stored.json["updatedBy"],
        json!("console:admin (first start)")
    );

    // Sign-out is a form too.
    let logout = b.post("/logout", &[("_csrf", "nope")]).await;
    assert_eq!(logout.status, 403);
    assert_eq!(b.get("/").await.status, 200, "the session lives on");
}

async fn read_tokens_see_pages_but_every_action_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let hook = app
        .post(
            "/api/v1/webhooks",
            json!({"name": "h", "endpoint": "https://example.com/h", "events": ["*"]}),
        )
        .await;
    let id = hook.json["id"].as_str().expect("id").to_string();
    app.req(reqwest::Method::PUT, "/api/v1/kv/s")
        .json(&json!({"type": "secret", "value": "s3cret-value"}))
        .send()
        .await
        .expect("put");
    let reader = app.token("read").await;
    let mut b = Browser::new(&app.base);
    b.sign_in(&reader, &[]).await;
    for path in [
        "/",
        "/migrations",
        "/webhooks",
        "/incoming",
        "/kv",
        "/kv/entry?key=s",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, 200, "{path}");
        assert!(!p.body.contains("s3cret-value"));
    }
    let page = b.get(&format!("/webhooks/{id}")).await;
    assert!(
        !page.body.contains("Send test event"),
        "no action buttons for read"
    );
    assert!(!b.get("/kv/entry?key=s").await.body.contains("Reveal"));
    let csrf = b.csrf().await;
    let c = csrf.as_str();
    let attempts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (format!("/webhooks/{id}/test"), vec![("_csrf", c)]),
        (format!("/webhooks/{id}/delete"), vec![("_csrf", c)]),
        (format!("/webhooks/{id}/rotate"), vec![("_csrf", c)]),
        (
            "/kv/put".into(),
            vec![
                ("_csrf", c),
                ("key", "r"),
                ("type", "string"),
                ("value", "x"),
            ],
        ),
        ("/kv/reveal".into(), vec![("_csrf", c), ("key", "s")]),
        ("/migrations/run".into(), vec![("_csrf", c)]),
        (
            "/incoming/sources".into(),
            vec![("_csrf", c), ("name", "x"), ("verifier", "none")],
        ),
    ];
    for (path, fields) in attempts {
        let p = b.post(&path, &fields).await;
        assert_eq!(p.status, 403, "{path}");
    }
    assert!(!kv_exists(&app, "r").await);
    app.get(&format!("/api/v1/webhooks/{id}"))
        .await
        .assert_status(200);
    let deliveries = app.get(&format!("/api/v1/deliveries?webhookId={id}")).await;
    assert_eq!(
        deliveries.json["items"],
        json!([]),
        "no test event was queued"
    );

    // A write token acts, but revealing a secret is for admins only.
    let writer = app.token("write").await;
    let mut w = Browser::new(&app.base);
    w.sign_in(&writer, &[]).await;
    let wc = w.csrf().await;
    let reveal = w.post("/kv/reveal", &[("_csrf", &wc), ("key", "s")]).await;
    assert_eq!(reveal.status, 403);
    assert!(!reveal.body.contains("s3cret-value"));
    let mut a = Browser::new(&app.base);
    a.sign_in(&app.admin_token, &[]).await;
    let ac = a.csrf().await;
    let shown = a.post("/kv/reveal", &[("_csrf", &ac), ("key", "s")]).await;
    assert_eq!(shown.status, 200);
    assert!(shown.body.contains("s3cret-value"));
}

async fn sign_out_expiry_and_revocation_end_the_session(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let mut b = Browser::new(&app.base);
    b.sign_in(&app.admin_token, &[]).await;
    let csrf = b.csrf().await;
    let out = b.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!((out.status, out.location.as_str()), (303, "/login"));
    assert!(
        out.cookie("opshub_session")
            .expect("cleared")
            .contains("Max-Age=0")
    );
    assert_eq!(
        b.get("/").await.location,
        "/login",
        "the old cookie is dead"
    );

    b.sign_in(&app.admin_token, &[]).await;
    assert_eq!(b.get("/").await.status, 200);
    let db = &app.state.db;
    sqlx::query(db.sql("UPDATE opshub_console_sessions SET expires_at = ?"))
        .bind("2000-01-01T00:00:00.000000Z")
        .execute(db.pool())
        .await
        .expect("expire");
    assert_eq!(
        b.get("/").await.location,
        "/login",
        "an expired session is dead"
    );

    let created = app
        .post(
            "/api/v1/tokens",
            json!({"name": "soon revoked", "scope": "write"}),
        )
        .await;
    let token = created.json["token"].as_str().expect("token").to_string();
    let token_id = created.json["id"].as_str().expect("id").to_string();
    b.sign_in(&token, &[]).await;
    assert_eq!(b.get("/").await.status, 200);
    app.req(
        reqwest::Method::DELETE,
        &format!("/api/v1/tokens/{token_id}"),
    )
    .send()
    .await
    .expect("revoke");
    assert_eq!(
        b.get("/").await.location,
        "/login",
        "a revoked token's session is dead"
    );
}

async fn a_session_works_on_every_instance_sharing_the_database(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let second = App::build(test_config(&app.db, &[]))
        .await
        .expect("second instance");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let stop = second.state.shutdown.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            second
                .router
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
        .expect("serves");
    });
    let mut a = Browser::new(&app.base);
    a.sign_in(&app.admin_token, &[]).await;
    let mut b = Browser::new(&base);
    b.session = a.session.clone();
    assert_eq!(
        b.get("/kv").await.status,
        200,
        "instance b knows a's session"
    );
    let csrf = b.csrf().await;
    let put = b
        .post(
            "/kv/put",
            &[
                ("_csrf", &csrf),
                ("key", "both"),
                ("type", "boolean"),
                ("value", "true"),
            ],
        )
        .await;
    assert_eq!(put.status, 303);
    let out = b.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.status, 303);
    assert_eq!(
        a.get("/").await.location,
        "/login",
        "signing out on b ends it on a"
    );
    second.state.shutdown.cancel();
}

/// A view over `orders` (SETUP) filtering on `total > {min}`; every backend has views.
fn big_orders(backend: Backend, min: u32) -> String {
    let head = if backend == Backend::Sqlite {
        "CREATE VIEW"
    } else {
        "CREATE OR REPLACE VIEW"
    };
    format!("{head} big_orders AS SELECT id FROM orders WHERE total > {min}")
}

/// `/procedures/{id}` from a redirect's location.
fn proc_id(location: &str) -> String {
    location
        .strip_prefix("/procedures/")
        .and_then(|rest| rest.split('?').next())
        .unwrap_or_else(|| panic!("not a procedure page: {location}"))
        .to_string()
}

async fn procedures_pages_create_deploy_and_roll_back_through_forms(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    let mut b = Browser::new(&app.base);
    b.sign_in(&app.admin_token, &[]).await;
    let c = b.csrf().await;
    let up = big_orders(backend, 100);
    let created = b
        .post(
            "/procedures/new",
            &[
                ("_csrf", &c),
                ("name", "big_orders"),
                ("type", "view"),
                ("version", "1"),
                ("sort", "0"),
                ("up_script", &up),
                ("down_script", "DROP VIEW big_orders"),
                ("depends_on", ""),
            ],
        )
        .await;
    assert_eq!(created.status, 303, "{}", created.body);
    let id = proc_id(&created.location);
    assert_eq!(created.location, format!("/procedures/{id}?notice=created"));

    // A form the operation refuses comes back with the message and what was typed.
    let bad = b
        .post(
            "/procedures/new",
            &[
                ("_csrf", &c),
                ("name", "no_create"),
                ("up_script", "SELECT 1"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.body.contains("no CREATE PROCEDURE"), "{}", bad.body);
    assert!(bad.body.contains("no_create") && bad.body.contains("SELECT 1"));
    let listed = app.get("/api/v1/procedures").await;
    assert_eq!(listed.json["items"].as_array().map(Vec::len), Some(1));

    for path in [
        "/procedures",
        "/procedures/new",
        "/procedures/deploy",
        &format!("/procedures/{id}"),
        "/",
    ] {
        assert_eq!(b.get(path).await.status, 200, "{path}");
    }
    let list = b.get("/procedures").await;
    assert!(list.body.contains("big_orders") && list.body.contains(">pending<"));
    assert!(
        list.body
            .contains(&format!("action=\"/procedures/{id}/deploy\""))
    );
    let home = b.get("/").await;
    assert!(home.body.contains("Drifted procedures") && home.body.contains("1 not in sync"));
    assert!(home.body.contains(&format!("href=\"/procedures/{id}\"")));
    let plan = b.get("/procedures/deploy").await;
    assert!(plan.body.contains("Deploy 1 procedure(s)"), "{}", plan.body);
    assert!(
        plan.body.contains("WHERE total &gt; 100"),
        "the plan shows the script"
    );

    let deployed = b
        .post(&format!("/procedures/{id}/deploy"), &[("_csrf", &c)])
        .await;
    assert_eq!(deployed.status, 303, "{}", deployed.body);
    assert_eq!(
        deployed.location,
        format!("/procedures/{id}?notice=deployed")
    );
    assert_eq!(state_of(&app, "big_orders").await, "in_sync");
    let detail = b.get(&format!("/procedures/{id}")).await;
    assert!(detail.body.contains(">in_sync<") && detail.body.contains("Identical"));
    assert!(detail.body.contains("Deployed vs live definition"));
    let home = b.get("/").await;
    assert!(
        home.body.contains("0 not in sync") && home.body.contains("All 1 procedure(s) in sync")
    );

    let confirm = b.get(&format!("/procedures/{id}/rollback")).await;
    assert!(confirm.body.contains("DROP VIEW big_orders"));
    let rolled = b
        .post(&format!("/procedures/{id}/rollback"), &[("_csrf", &c)])
        .await;
    assert_eq!(rolled.status, 303, "{}", rolled.body);
    assert_eq!(state_of(&app, "big_orders").await, "pending");

    let all = b.post("/procedures/deploy", &[("_csrf", &c)]).await;
    assert_eq!(all.status, 200);
    assert!(
        all.body.contains("Done: 1 procedure(s) deployed."),
        "{}",
        all.body
    );
    assert_eq!(state_of(&app, "big_orders").await, "in_sync");

    // Without a down script, rollback is refused cleanly: no button, and a 409 page.
    let head = if backend == Backend::Sqlite {
        "CREATE VIEW"
    } else {
        "CREATE OR REPLACE VIEW"
    };
    let bare = create(
        &app,
        json!({"name": "no_down", "upScript": format!("{head} no_down AS SELECT id FROM orders")}),
    )
    .await;
    deploy_all(&app).await;
    let bare_id = bare["id"].as_str().expect("id");
    let confirm = b.get(&format!("/procedures/{bare_id}/rollback")).await;
    assert!(confirm.body.contains("has no down script"));
    assert!(
        !confirm
            .body
            .contains(&format!("action=\"/procedures/{bare_id}/rollback\""))
    );
    let refused = b
        .post(&format!("/procedures/{bare_id}/rollback"), &[("_csrf", &c)])
        .await;
    assert_eq!(refused.status, 409);
    assert!(
        refused.body.contains("has no downScript"),
        "{}",
        refused.body
    );
    assert_eq!(state_of(&app, "no_down").await, "in_sync");
}

async fn read_tokens_see_procedures_but_cannot_deploy_or_roll_back(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    let p = create(
        &app,
        json!({"name": "big_orders", "upScript": big_orders(backend, 100), "downScript": "DROP VIEW big_orders"}),
    )
    .await;
    let id = p["id"].as_str().expect("id");
    let reader = app.token("read").await;
    let mut b = Browser::new(&app.base);
    b.sign_in(&reader, &[]).await;
    for path in ["/procedures", &format!("/procedures/{id}"), "/"] {
        let page = b.get(path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(page.body.contains("big_orders"), "{path}");
        assert!(
            !page.body.contains("/deploy\""),
            "no deploy form for read on {path}"
        );
        assert!(!page.body.contains("New procedure") && !page.body.contains("Roll back"));
    }
    for path in ["/procedures/new", "/procedures/deploy"] {
        assert_eq!(b.get(path).await.status, 403, "{path}");
    }
    let c = b.csrf().await;
    for path in [
        format!("/procedures/{id}/deploy"),
        "/procedures/deploy".to_string(),
    ] {
        assert_eq!(b.post(&path, &[("_csrf", &c)]).await.status, 403, "{path}");
    }
    let new = b
        .post(
            "/procedures/new",
            &[
                ("_csrf", &c),
                ("name", "sneaky"),
                ("up_script", &big_orders(backend, 1)),
            ],
        )
        .await;
    assert_eq!(new.status, 403);
    assert_eq!(
        state_of(&app, "big_orders").await,
        "pending",
        "nothing deployed"
    );
    let listed = app.get("/api/v1/procedures").await;
    assert_eq!(listed.json["items"].as_array().map(Vec::len), Some(1));

    deploy_all(&app).await;
    let rb = b
        .post(&format!("/procedures/{id}/rollback"), &[("_csrf", &c)])
        .await;
    assert_eq!(rb.status, 403);
    assert_eq!(
        state_of(&app, "big_orders").await,
        "in_sync",
        "nothing rolled back"
    );
}

async fn a_drifted_procedure_shows_both_definitions_side_by_side(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    exec(&app, SETUP).await;
    let p = create(
        &app,
        json!({"name": "big_orders", "upScript": big_orders(backend, 100)}),
    )
    .await;
    let id = p["id"].as_str().expect("id");
    deploy_all(&app).await;
    // Someone changes the view behind opshub's back.
    let alter = if backend == Backend::Sqlite {
        format!("DROP VIEW big_orders; {}", big_orders(backend, 500))
    } else {
        big_orders(backend, 500)
    };
    exec(&app, &alter).await;
    assert_eq!(state_of(&app, "big_orders").await, "drifted");

    let mut b = Browser::new(&app.base);
    b.sign_in(&app.admin_token, &[]).await;
    assert!(b.get("/procedures").await.body.contains(">drifted<"));
    let home = b.get("/").await;
    assert!(home.body.contains("1 not in sync") && home.body.contains(">drifted<"));
    assert!(home.body.contains(&format!("href=\"/procedures/{id}\"")));

    let detail = b.get(&format!("/procedures/{id}")).await;
    let body = &detail.body;
    assert!(body.contains(">drifted<"));
    let left_at = body.find("id=\"def-deployed\"").expect("deployed column");
    let right_at = body.find("id=\"def-live\"").expect("live column");
    assert!(left_at < right_at);
    let (deployed, live) = (&body[left_at..right_at], &body[right_at..]);
    assert!(
        deployed.contains("100") && !deployed.contains("500"),
        "{deployed}"
    );
    assert!(live.contains("500"), "{live}");
    assert!(deployed.contains("class=\"ln del\"") && live.contains("class=\"ln add\""));
    assert!(
        deployed.contains("&gt;") && !deployed.contains("> 100"),
        "escaped"
    );
    assert!(body.contains("line(s) differ"));
    assert!(body.contains("--- deployed"), "the unified diff too");

    // Deploying it on its own restores the definition.
    let c = b.csrf().await;
    let restored = b
        .post(&format!("/procedures/{id}/deploy"), &[("_csrf", &c)])
        .await;
    assert_eq!(restored.status, 303);
    assert_eq!(state_of(&app, "big_orders").await, "in_sync");
    assert!(
        b.get(&format!("/procedures/{id}"))
            .await
            .body
            .contains("Identical")
    );
}

#[tokio::test]
async fn stored_text_is_escaped_in_pages() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let evil = "<script>alert(1)</script>\"'";
    app.req(reqwest::Method::PUT, "/api/v1/kv/xss")
        .json(&json!({"type": "string", "value": evil, "description": evil}))
        .send()
        .await
        .expect("put");
    let mut b = Browser::new(&app.base);
    b.sign_in(&app.admin_token, &[]).await;
    let p = create(
        &app,
        json!({"name": evil, "upScript": format!("CREATE VIEW xss_v AS SELECT '{}' AS s", evil.replace('\'', "''"))}),
    )
    .await;
    deploy_all(&app).await;
    let id = p["id"].as_str().expect("id");
    for path in [
        "/kv",
        "/kv/entry?key=xss",
        "/procedures",
        &format!("/procedures/{id}"),
    ] {
        let page = b.get(path).await;
        assert!(!page.body.contains("<script>"), "{path} echoes markup");
        assert!(
            page.body.contains("&lt;script&gt;"),
            "{path} shows the text"
        );
    }
}
