//! Tests that need root (a tmpfs to fill, port 53, a mount namespace, packet filter rules):
//! where the machine does not allow what they need, they say so and return, unless
//! `EVENTS_TEST_PRIVILEGED=require` is set, as `.ci/run` sets it, where a skip is a failure.
//! A developer without root still gets a passing `make test`; CI cannot pass by skipping.

/// The variable that turns a skip into a failure.
pub const REQUIRE_VARIABLE: &str = "EVENTS_TEST_PRIVILEGED";

/// Reports that the check `what` cannot run here because of `why`: a `SKIPPED:` line on
/// stderr, or a panic when [`REQUIRE_VARIABLE`] is `require`.
pub fn unavailable(what: &str, why: impl std::fmt::Display) {
    let line = format!("{what} is unchecked: {why} (run the tests as root)");
    if std::env::var(REQUIRE_VARIABLE).as_deref() == Ok("require") {
        panic!("{line}; {REQUIRE_VARIABLE}=require does not allow a skip");
    }
    eprintln!("SKIPPED: {line}");
}
