//! The lenient Vault field readers (`keep_server::fields`) and the role writes built on them:
//! cert auth roles (`keep_server::auth::role`) and PKI roles (`keep_server::pki::role`).
//!
//! Input: a JSON object (anything else is skipped), as a client would post it.
//!
//! Invariants beyond "no panic":
//! - the readers agree with the plain forms: a number or a decimal string reads as itself,
//!   a boolean is read as Go's `strconv.ParseBool` reads it, a list read back from its own
//!   output (array or comma-joined) is unchanged;
//! - a role written from the body, then written again from its own stored form (cert auth) or
//!   its `GET` answer (PKI, what hvac and Terraform send back), is the same role;
//! - applying the same body twice is idempotent; a refused PKI role write changes nothing.
#![no_main]

use keep_server::auth::role::Role;
use keep_server::fields;
use keep_server::pki::role::PkiRole;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The number a value plainly says, if it is a u64 or a decimal string of one.
fn plain_u64(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn check_fields(m: &Map<String, Value>) {
    let keys: Vec<String> = m.keys().take(8).cloned().collect();
    for field in keys
        .iter()
        .map(String::as_str)
        .chain(["ttl", "max_ttl", "version"])
    {
        let v = m.get(field);
        if let Ok(Some(n)) = fields::opt_u64(m, field) {
            assert_eq!(
                Some(n),
                plain_u64(v),
                "opt_u64({field}) read {n} from {v:?}"
            );
        }
        for (name, read) in [
            (
                "opt_duration_secs",
                fields::opt_duration_secs(m, field).ok(),
            ),
            ("ttl", fields::ttl(m, field).ok()),
        ] {
            if let (Some(Some(n)), Some(p)) = (read, plain_u64(v)) {
                assert_eq!(n, p, "{name}({field}) read {n} from {v:?}");
            }
        }
        if let Ok(Some(b)) = fields::boolean(m, field) {
            let plain = match v {
                Some(Value::Bool(b)) => Some(*b),
                // Go's strconv.ParseBool; "" is false as Vault's decoder reads it.
                Some(Value::String(s)) => Some(matches!(
                    s.as_str(),
                    "1" | "t" | "T" | "TRUE" | "true" | "True"
                )),
                _ => None,
            };
            assert_eq!(Some(b), plain, "boolean({field}) read {b} from {v:?}");
        }
        if let Ok(Some(list)) = fields::string_list(m, field) {
            assert!(
                list.iter().all(|s| !s.is_empty() && s.trim() == s),
                "string_list({field}) kept an empty or untrimmed entry: {list:?}"
            );
            let as_array = obj(serde_json::json!({ "f": list }));
            assert_eq!(
                fields::string_list(&as_array, "f").ok(),
                Some(Some(list.clone()))
            );
            if list.iter().all(|s| !s.contains(',')) {
                let joined = obj(serde_json::json!({ "f": list.join(",") }));
                assert_eq!(
                    fields::string_list(&joined, "f").ok(),
                    Some(Some(list.clone()))
                );
            }
        }
    }
    if let Ok(versions) = fields::versions(m) {
        let as_array = obj(serde_json::json!({ "versions": versions }));
        assert_eq!(fields::versions(&as_array).ok(), Some(versions));
    }
}

fn check_cert_role(m: &Map<String, Value>) {
    let mut first = Role::default();
    if first.apply(m).is_err() {
        return;
    }
    let mut twice = first.clone();
    twice
        .apply(m)
        .unwrap_or_else(|e| panic!("the same body refused the second time: {e}"));
    assert_eq!(
        first, twice,
        "applying the same body twice changed the role"
    );

    let stored = obj(serde_json::to_value(&first).unwrap_or(Value::Null));
    let mut again = Role::default();
    again
        .apply(&stored)
        .unwrap_or_else(|e| panic!("a role's own stored form refused: {e}"));
    assert_eq!(
        first, again,
        "a role written back from its stored form changed"
    );
}

fn check_pki_role(m: &Map<String, Value>) {
    let mut first = PkiRole::default();
    if first.apply(m).is_err() {
        assert_eq!(
            first,
            PkiRole::default(),
            "a refused write changed the role"
        );
        return;
    }
    let mut twice = first.clone();
    twice
        .apply(m)
        .unwrap_or_else(|e| panic!("the same body refused the second time: {e}"));
    assert_eq!(
        first, twice,
        "applying the same body twice changed the role"
    );

    let answered = obj(first.to_json());
    let mut again = PkiRole::default();
    again
        .apply(&answered)
        .unwrap_or_else(|e| panic!("a role's own GET answer refused: {e}"));
    assert_eq!(
        first, again,
        "a role written back from its GET answer changed"
    );
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    check_fields(&m);
    check_cert_role(&m);
    check_pki_role(&m);
});
