//! The whole chain on a probe of our own: compile, run, parse, compare with `layout!`/`consts!`,
//! and the failure messages when the compiler complains, the probe fails or a header is missing.

use c_probe::{assert_same, consts, layout, mismatches, Probe, Values};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c");
const TMP: &str = env!("CARGO_TARGET_TMPDIR");

fn probe(name: &str) -> Probe {
    Probe::new(format!("{DIR}/{name}.c"), format!("{TMP}/c-probe-{name}")).flag("-std=c11")
}

/// Mirrors `struct self_test` of `tests/c/self_test.c`.
#[repr(C)]
struct SelfTest {
    small: u16,
    big: u64,
    r#ref: u32,
}

const SELF_TEST_MAGIC: u16 = 0x5a17;

fn rust_values() -> Values {
    let mut v = Values::new();
    consts!(v; SELF_TEST_MAGIC);
    layout!(v; "self_test", SelfTest, [small, big, r#ref]);
    v
}

#[test]
fn a_probe_matches_the_rust_mirror_of_its_struct() {
    let c = probe("self_test").numbers();
    assert_eq!(c.len(), 5, "{c:?}");
    assert_eq!(c.get("SELF_TEST_MAGIC"), Some(&0x5a17));
    assert_eq!(c.get("offsetof.self_test.ref"), Some(&16));
    assert_same("self-test", &c, &rust_values());
}

#[test]
fn a_wrong_mirror_is_reported_by_name() {
    /// `small` and `big` swapped: every offset moves and the padding shrinks.
    #[repr(C)]
    struct Swapped {
        big: u64,
        small: u16,
        r#ref: u32,
    }
    let mut wrong = Values::new();
    consts!(wrong; SELF_TEST_MAGIC);
    layout!(wrong; "self_test", Swapped, [small, big, r#ref]);
    let problems = mismatches(&probe("self_test").numbers(), wrong.map());
    assert_eq!(
        problems,
        [
            "offsetof.self_test.big: Rust 0 (0x0) != C 8 (0x8)",
            "offsetof.self_test.ref: Rust 12 (0xc) != C 16 (0x10)",
            "offsetof.self_test.small: Rust 8 (0x8) != C 0 (0x0)",
            "sizeof.self_test: Rust 16 (0x10) != C 24 (0x18)",
        ]
    );
}

#[test]
fn lines_keep_the_raw_text() {
    let lines = probe("self_test").lines();
    assert_eq!(
        lines.get("SELF_TEST_MAGIC").map(String::as_str),
        Some("23063")
    );
}

#[test]
#[should_panic(expected = "unused_on_purpose")]
fn a_compiler_complaint_fails_with_its_message() {
    probe("warns").output();
}

#[test]
#[should_panic(expected = "probe gave up on purpose")]
fn a_failing_probe_fails_with_its_stderr() {
    probe("fails").output();
}

#[test]
#[should_panic(
    expected = "not found; this test needs a C compiler and the headers of \
                           no-such-package: apt-get install gcc no-such-package"
)]
fn a_missing_header_fails_with_the_install_hint() {
    probe("self_test")
        .package("no-such-package")
        .require("/nonexistent/c-probe/header.h")
        .output();
}
