//! Unit tests of Go's decoding semantics: merging, folding, `null`, backing
//! arrays, type and syntax errors, limits, field lookup.

use super::*;
use crate::classify::Action;
use crate::inspect::schema::{CONTAINER_CREATE, GENERIC};
use serde_json::json;

fn create(body: &str) -> Value {
    decode(body.as_bytes(), &CONTAINER_CREATE).unwrap_or_else(|e| panic!("{body}: {e}"))
}

fn create_err(body: &str) -> BodyError {
    match decode(body.as_bytes(), &CONTAINER_CREATE) {
        Ok(v) => panic!("{body} decoded to {v}, expected an error"),
        Err(e) => e,
    }
}

#[test]
fn duplicate_host_configs_merge() {
    let v = create(r#"{"HostConfig":{"Privileged":false},"HostConfig":{"Binds":["/:/host"]}}"#);
    assert_eq!(
        v["HostConfig"],
        json!({"Privileged": false, "Binds": ["/:/host"]})
    );
    let v = create(r#"{"HostConfig":{"Privileged":true},"HostConfig":{"Binds":["/:/host"]}}"#);
    assert_eq!(v["HostConfig"]["Privileged"], json!(true));
}

#[test]
fn keys_fold_to_canonical_names() {
    let v = create(r#"{"hostconfig":{"privileged":true}}"#);
    assert_eq!(v, json!({"HostConfig": {"Privileged": true}}));
    let v = create(r#"{"HostConfig":{"PRIVILEGED":true}}"#);
    assert_eq!(v["HostConfig"]["Privileged"], json!(true));
    // Non-ASCII spellings of field names are refused, escaped or not:
    // Go versions disagree on them (see the module docs).
    for body in [
        r#"{"HostConfig":{"Bind\u017f":["/:/h"]}}"#,
        "{\"HostConfig\":{\"Bind\u{17f}\":[\"/:/h\"]}}",
        "{\"HostConfig\":{\"Networ\u{212a}Mode\":\"host\"}}",
        "{\"HostConfig\":{\"Privileged\":true,\"Pr\u{131}vileged\":false}}",
        "{\"\u{130}mage\":\"alpine\"}",
        // In a part of the body we have no schema for, too.
        "{\"HostConfig\":{\"Future\":{\"Pr\u{131}v\":true}}}",
    ] {
        let err = decode(body.as_bytes(), &CONTAINER_CREATE).unwrap_err();
        assert!(err.to_string().contains("non-ASCII"), "{body}: {err}");
    }
    // Non-ASCII keys that spell no ASCII name are ordinary unknown keys.
    let v = create("{\"HostConfig\":{\"\u{e9}t\u{e9}\":1}}");
    assert_eq!(v["HostConfig"]["\u{c9}T\u{c9}"], json!(1));
    // An escaped key is unescaped before matching.
    let v = create(r#"{"HostConfig":{"Privil\u0065ged":true}}"#);
    assert_eq!(v["HostConfig"]["Privileged"], json!(true));
}

/// Daemons up to 20.10 read HostConfig fields at the top level too.
#[test]
fn legacy_top_level_host_config() {
    let v = create(r#"{"Image":"x","privileged":true,"Binds":["/:/host"],"NetworkMode":"host"}"#);
    assert_eq!(
        v["HostConfig"],
        json!({"Binds": ["/:/host"], "NetworkMode": "host", "Privileged": true})
    );
    assert_eq!(
        v["Privileged"],
        json!(true),
        "top-level fields stay visible"
    );
    // With an inner HostConfig, the inner one is used...
    let v = create(r#"{"Privileged":true,"HostConfig":{"Binds":[]}}"#);
    assert_eq!(v["HostConfig"], json!({"Binds": []}));
    // ...except five fields copied in when the inner value is zero.
    let v = create(
        r#"{"Memory":100,"VolumeDriver":"evil","CpuShares":5,"HostConfig":{"Memory":0,"CpuShares":7},"Cpuset":"0-1"}"#,
    );
    assert_eq!(
        v["HostConfig"],
        json!({"Memory": 100, "CpuShares": 7, "VolumeDriver": "evil", "CpusetCpus": "0-1"})
    );
    // Type checked like the inner fields.
    assert!(matches!(
        create_err(r#"{"Privileged":"yes"}"#),
        BodyError::Json(_)
    ));
    // Nothing at the top level: nothing added.
    assert_eq!(create(r#"{"Image":"x"}"#), json!({"Image": "x"}));
    assert_eq!(create(r#"{"Cpuset":"1"}"#), json!({"Cpuset": "1"}));
}

#[test]
fn last_scalar_wins_across_spellings() {
    assert_eq!(create(r#"{"image":"a","Image":"b"}"#)["Image"], json!("b"));
    assert_eq!(create(r#"{"Image":"b","IMAGE":"a"}"#)["Image"], json!("a"));
    let v = create(r#"{"HostConfig":{"Privileged":false,"privileged":true}}"#);
    assert_eq!(v["HostConfig"]["Privileged"], json!(true));
}

#[test]
fn null_keeps_scalars_and_resets_pointers() {
    let v = create(r#"{"HostConfig":{"Privileged":true,"Privileged":null}}"#);
    assert_eq!(v["HostConfig"]["Privileged"], json!(true));
    let v = create(
        r#"{"Image":"x","Image":null,"HostConfig":{"LogConfig":{"Type":"none"},"LogConfig":null}}"#,
    );
    assert_eq!(v["Image"], json!("x"));
    assert_eq!(v["HostConfig"]["LogConfig"], json!({"Type": "none"}));
    // Pointers, slices and maps are reset to nil (absent).
    let v = create(
        r#"{"HostConfig":{"Init":true,"Init":null,"Binds":["/a:/a"],"Binds":null,"Sysctls":{"a":"1"},"Sysctls":null}}"#,
    );
    assert_eq!(v["HostConfig"], json!({}));
    // A nil HostConfig pointer is re-allocated fresh: no merge with the old one.
    let v =
        create(r#"{"HostConfig":{"Privileged":true},"HostConfig":null,"HostConfig":{"Binds":[]}}"#);
    assert_eq!(v["HostConfig"], json!({"Binds": []}));
    // A null-only scalar never appears.
    assert_eq!(create(r#"{"User":null}"#), json!({}));
}

#[test]
fn trailing_data_refused() {
    assert!(matches!(create_err("{}{}"), BodyError::TrailingData));
    assert!(matches!(create_err("{} x"), BodyError::TrailingData));
    assert!(matches!(create_err("{}}"), BodyError::TrailingData));
    assert_eq!(create("{} "), json!({}));
    assert_eq!(create(" \t\r\n{}\n"), json!({}));
}

#[test]
fn map_keys_are_exact_and_entries_replace() {
    let v = create(r#"{"Labels":{"Owner":"a","owner":"b","OWNER":"c"}}"#);
    assert_eq!(
        v["Labels"],
        json!({"Owner": "a", "owner": "b", "OWNER": "c"})
    );
    // Duplicate Labels objects merge their keys; a duplicate key replaces.
    let v = create(r#"{"Labels":{"a":"1","b":"2"},"labels":{"b":"3","c":"4"}}"#);
    assert_eq!(v["Labels"], json!({"a": "1", "b": "3", "c": "4"}));
    // null in a map[string]string stores the zero value "".
    assert_eq!(
        create(r#"{"Labels":{"a":"1","a":null}}"#)["Labels"],
        json!({"a": ""})
    );
    // Map values are fresh zero elements: a duplicate endpoint does NOT merge.
    let v = create(
        r#"{"NetworkingConfig":{"EndpointsConfig":{"n":{"Aliases":["x"]},"n":{"DriverOpts":{"k":"v"}}}}}"#,
    );
    assert_eq!(
        v["NetworkingConfig"]["EndpointsConfig"],
        json!({"n": {"DriverOpts": {"k": "v"}}})
    );
    // Struct keys inside map values still fold.
    let v = create(
        r#"{"NetworkingConfig":{"EndpointsConfig":{"Net":{"driveropts":{"com.docker.network.endpoint.sysctls":"x"}}}}}"#,
    );
    assert_eq!(
        v["NetworkingConfig"]["EndpointsConfig"]["Net"]["DriverOpts"],
        json!({"com.docker.network.endpoint.sysctls": "x"})
    );
}

#[test]
fn arrays_reuse_the_backing_array() {
    // Element i decodes into the old element i (struct fields merge), the
    // slice is truncated, and a later longer array re-exposes old elements.
    let v = create(
        r#"{"HostConfig":{
                "Mounts":[{"Type":"volume","Target":"/a"},{"Type":"bind","Source":"/","Target":"/host"},{"Target":"/c"}],
                "Mounts":[{"Target":"/x"}],
                "Mounts":[{"ReadOnly":true},{"ReadOnly":false}]}}"#,
    );
    assert_eq!(
        v["HostConfig"]["Mounts"],
        json!([
            {"Type": "volume", "Target": "/x", "ReadOnly": true},
            {"Type": "bind", "Source": "/", "Target": "/host", "ReadOnly": false}
        ])
    );
    // Scalars: null keeps the re-exposed old element.
    let v = create(
        r#"{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":["/c:/c"],"Binds":["/d:/d",null]}}"#,
    );
    assert_eq!(v["HostConfig"]["Binds"], json!(["/d:/d", "/:/host"]));
    // An empty array drops the backing array: new elements start at zero.
    let v =
        create(r#"{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":[],"Binds":["/c:/c",null]}}"#);
    assert_eq!(v["HostConfig"]["Binds"], json!(["/c:/c", ""]));
    // So does null.
    let v = create(
        r#"{"HostConfig":{"Binds":["/a:/a","/:/host"],"Binds":null,"Binds":["/c:/c",null]}}"#,
    );
    assert_eq!(v["HostConfig"]["Binds"], json!(["/c:/c", ""]));
    // Pointer elements: merge into the old pointee, null makes them nil.
    let v = create(
        r#"{"HostConfig":{"Ulimits":[{"Name":"nofile","Hard":10}],"Ulimits":[{"Soft":5},null]}}"#,
    );
    assert_eq!(
        v["HostConfig"]["Ulimits"],
        json!([{"Name": "nofile", "Hard": 10, "Soft": 5}, null])
    );
}

#[test]
fn strslice_accepts_string_and_replaces_wholesale() {
    let v = create(r#"{"HostConfig":{"CapAdd":"SYS_ADMIN"}}"#);
    assert_eq!(v["HostConfig"]["CapAdd"], json!(["SYS_ADMIN"]));
    // StrSlice's UnmarshalJSON decodes into a fresh slice: no backing reuse.
    let v = create(r#"{"Cmd":["a","b"],"Cmd":["c"],"Cmd":["d",null]}"#);
    assert_eq!(v["Cmd"], json!(["d", ""]));
    assert_eq!(create(r#"{"Cmd":["a"],"Cmd":null}"#), json!({}));
    assert!(matches!(
        create_err(r#"{"Cmd":{"a":1}}"#),
        BodyError::Json(_)
    ));
    assert!(matches!(create_err(r#"{"Cmd":[1]}"#), BodyError::Json(_)));
}

#[test]
fn type_mismatches_refused() {
    for body in [
        r#"{"HostConfig":{"Privileged":"true"}}"#,
        r#"{"HostConfig":{"Privileged":1}}"#,
        r#"{"HostConfig":{"Binds":"/:/host"}}"#,
        r#"{"HostConfig":{"Binds":[1]}}"#,
        r#"{"HostConfig":{"BlkioWeight":70000}}"#,
        r#"{"HostConfig":{"Memory":1.5}}"#,
        r#"{"HostConfig":{"Memory":1e3}}"#,
        r#"{"HostConfig":{"Memory":"1"}}"#,
        r#"{"HostConfig":{"Memory":99999999999999999999}}"#,
        r#"{"HostConfig":{"IOMaximumIOps":-1}}"#,
        r#"{"HostConfig":{"ConsoleSize":[-1,2]}}"#,
        r#"{"HostConfig":{"LogConfig":"json-file"}}"#,
        r#"{"HostConfig":{"Sysctls":{"a":1}}}"#,
        r#"{"HostConfig":[]}"#,
        r#"{"Image":["a"]}"#,
        r#"{"ExposedPorts":{"80/tcp":1}}"#,
        r#"[]"#,
        r#""x""#,
    ] {
        let err = create_err(body);
        assert!(matches!(err, BodyError::Json(_)), "{body}: {err}");
    }
    // The error names the field.
    let msg = create_err(r#"{"HostConfig":{"privileged":"yes"}}"#).to_string();
    assert!(msg.contains("HostConfig.Privileged"), "{msg}");
    // In range values are fine.
    let v = create(r#"{"HostConfig":{"BlkioWeight":65535,"Memory":-1,"CpuShares":0}}"#);
    assert_eq!(v["HostConfig"]["BlkioWeight"], json!(65535));
    assert_eq!(v["HostConfig"]["Memory"], json!(-1));
}

#[test]
fn syntax_errors_refused() {
    for body in [
        "",
        "  ",
        "{",
        r#"{"a"}"#,
        r#"{"a":}"#,
        r#"{"a":1,}"#,
        "[1,]",
        "01",
        "-",
        "1.",
        "1e",
        "tru",
        "nul",
        r#"{'a':1}"#,
        "{\"a\":\"\u{1}\"}",
        r#"{"a":"\x"}"#,
        r#"{"a":"\u12"}"#,
        "\u{feff}{}",
        "{\"a\":NaN}",
    ] {
        let err = decode(body.as_bytes(), &GENERIC).expect_err(body);
        assert!(
            matches!(err, BodyError::Json(_) | BodyError::TrailingData),
            "{body:?}: {err}"
        );
    }
}

#[test]
fn invalid_utf8_refused_and_surrogates_like_go() {
    let err = decode(b"{\"Image\":\"\xff\"}", &CONTAINER_CREATE).unwrap_err();
    assert!(err.to_string().contains("UTF-8"), "{err}");
    // A lone surrogate becomes U+FFFD, as Go's unquote does.
    assert_eq!(
        create(r#"{"Image":"a\ud800b"}"#)["Image"],
        json!("a\u{fffd}b")
    );
    // A high surrogate followed by a non-surrogate escape keeps the escape.
    assert_eq!(
        create(r#"{"Image":"\ud800\u0041"}"#)["Image"],
        json!("\u{fffd}A")
    );
    assert_eq!(
        create(r#"{"Image":"\ud83d\ude00"}"#)["Image"],
        json!("\u{1f600}")
    );
}

#[test]
fn unknown_keys_kept_under_their_fold() {
    let v =
        create(r#"{"fooBar":1,"FOOBAR":{"x":1},"foobar":{"Y":2},"HostConfig":{"Whatever":true}}"#);
    assert_eq!(v["FOOBAR"], json!({"X": 1, "Y": 2}));
    assert_eq!(v["HostConfig"]["WHATEVER"], json!(true));
    // Unknown values are not type checked (Go skips them), only parsed.
    let v = create(r#"{"Config":{"Privileged":"yes"}}"#);
    assert_eq!(v["CONFIG"], json!({"PRIVILEGED": "yes"}));
    // null keeps an unknown key's previous value.
    assert_eq!(create(r#"{"x":1,"x":null}"#)["X"], json!(1));
    assert_eq!(create(r#"{"x":null}"#)["X"], json!(null));
}

#[test]
fn generic_mode_folds_all_keys_and_merges() {
    let v = decode(
        br#"{"Spec":{"a":1},"spec":{"B":[1,{"c":2}]},"n":1.5,"n":-3}"#,
        &GENERIC,
    )
    .unwrap();
    assert_eq!(v, json!({"SPEC": {"A": 1, "B": [1, {"C": 2}]}, "N": -3}));
    // Arrays are replaced, not merged, when the type is unknown.
    let v = decode(br#"{"a":[1,2,3],"a":[4]}"#, &GENERIC).unwrap();
    assert_eq!(v, json!({"A": [4]}));
    assert!(decode(b"{\"a\":1e400}", &GENERIC).is_err());
    assert_eq!(decode(b"null", &GENERIC).unwrap(), json!(null));
}

#[test]
fn fixed_arrays_like_go() {
    let v = create(r#"{"HostConfig":{"ConsoleSize":[5,6],"ConsoleSize":[null]}}"#);
    assert_eq!(v["HostConfig"]["ConsoleSize"], json!([5, 0]));
    let v = create(r#"{"HostConfig":{"ConsoleSize":[1,2,"ignored"]}}"#);
    assert_eq!(v["HostConfig"]["ConsoleSize"], json!([1, 2]));
    let v = create(r#"{"HostConfig":{"ConsoleSize":[1,2],"ConsoleSize":null}}"#);
    assert_eq!(v["HostConfig"]["ConsoleSize"], json!([1, 2]));
    let v = decode(br#"{"ConsoleSize":[3]}"#, schema_for(Action::EXEC_START)).unwrap();
    assert_eq!(v["ConsoleSize"], json!([3, 0]));
}

#[test]
fn nesting_depth_is_bounded() {
    let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
    let err = decode(deep.as_bytes(), &GENERIC).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
    let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
    assert!(decode(ok.as_bytes(), &GENERIC).is_ok());
}

#[test]
fn many_keys_stay_correct_with_the_index() {
    let mut body = String::from("{\"Labels\":{");
    for i in 0..200 {
        body.push_str(&format!("\"k{i}\":\"{i}\","));
    }
    body.push_str("\"k7\":\"last\"}}");
    let v = create(&body);
    let labels = v["Labels"].as_object().unwrap();
    assert_eq!(labels.len(), 200);
    assert_eq!(labels["k7"], json!("last"));
    assert_eq!(labels["k199"], json!("199"));
}

static SMALL_COLLIDING: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "test.Small",
    fields: &[
        Field {
            name: "ab",
            schema: Schema::String,
        },
        Field {
            name: "AB",
            schema: Schema::String,
        },
    ],
};
static LARGE_COLLIDING: StructSchema = StructSchema {
    index: FieldIndex::new(),
    go_type: "test.Large",
    fields: &[
        Field {
            name: "f1",
            schema: Schema::Bool,
        },
        Field {
            name: "f2",
            schema: Schema::Bool,
        },
        Field {
            name: "f3",
            schema: Schema::Bool,
        },
        Field {
            name: "f4",
            schema: Schema::Bool,
        },
        Field {
            name: "f5",
            schema: Schema::Bool,
        },
        Field {
            name: "f6",
            schema: Schema::Bool,
        },
        Field {
            name: "f7",
            schema: Schema::Bool,
        },
        Field {
            name: "f8",
            schema: Schema::Bool,
        },
        Field {
            name: "ab",
            schema: Schema::String,
        },
        Field {
            name: "AB",
            schema: Schema::String,
        },
    ],
};

/// Go: an exact name match wins; otherwise the FIRST field whose fold
/// matches. Checked on both lookup paths (linear and hashed).
#[test]
fn exact_match_first_then_first_fold() {
    for st in [&SMALL_COLLIDING, &LARGE_COLLIDING] {
        let schema = Schema::Struct(st);
        let v = decode(br#"{"AB":"exact-upper","ab":"exact-lower"}"#, &schema).unwrap();
        assert_eq!(v["AB"], json!("exact-upper"), "{}", st.go_type);
        assert_eq!(v["ab"], json!("exact-lower"), "{}", st.go_type);
        let v = decode(br#"{"Ab":"folded"}"#, &schema).unwrap();
        assert_eq!(v, json!({"ab": "folded"}), "{}", st.go_type);
        assert!(st.lookup("zz").is_none());
    }
    // Non-ASCII spellings are refused on the linear path too
    // (DeviceMapping has 3 fields).
    let body = "{\"HostConfig\":{\"Devices\":[{\"PathOnHo\u{17f}t\":\"/dev/mem\"}]}}";
    assert!(decode(body.as_bytes(), &CONTAINER_CREATE).is_err());
}

#[test]
fn many_empty_objects_decode() {
    // Sparse struct nodes: 100k empty mounts are cheap and all visible.
    let body = format!(
        r#"{{"HostConfig":{{"Mounts":[{}{{"Type":"bind","Source":"/"}}]}}}}"#,
        "{},".repeat(100_000)
    );
    let v = create(&body);
    let mounts = v["HostConfig"]["Mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 100_001);
    assert_eq!(mounts[100_000], json!({"Type": "bind", "Source": "/"}));
}

#[test]
fn fold_matches_go() {
    assert_eq!(fold_name("Bind\u{17f}"), "BINDS");
    assert_eq!(fold_name("networ\u{212a}mode"), "NETWORKMODE");
    assert_eq!(fold_name("\u{130}mage"), "IMAGE");
    assert_eq!(fold_name("\u{131}"), "I");
    assert_eq!(fold_name("stra\u{df}e"), "STRA\u{df}E");
    assert_eq!(fold_name("\u{1f80}"), fold_name("\u{1f88}"));
    assert_eq!(fold_name("\u{3c3}"), fold_name("\u{3c2}"));
}
