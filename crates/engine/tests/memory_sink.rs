//! The in-memory sink the pipeline tests use passes the same conformance kit as the real sinks, so the
//! pipeline tests rest on a sink that behaves like one.

use polyrepl_core::testkit::conformance::{run_all, Capabilities, Oversize, Subject};
use polyrepl_core::testkit::memory_sink::MemorySink;
use polyrepl_core::Sink;

#[tokio::test]
async fn the_memory_sink_passes_the_conformance_kit() {
    let (mut sink, handle) = MemorySink::new("memory", "conformance");
    // Its own limit (the kit's edge rows hold values up to 10,000 bytes).
    handle.set_max_value_bytes(64 * 1024);
    let with_policy = handle.clone();
    let subject = Subject {
        label: "memory".into(),
        pipeline: "conformance".into(),
        capabilities: Capabilities::default(),
        reopen: Box::new(move || {
            let handle = handle.clone();
            Box::pin(async move { Box::new(handle.reopen()) as Box<dyn Sink> })
        }),
        open_with_policy: Box::new(move |policy| {
            let handle = with_policy.clone();
            Box::pin(async move { Box::new(handle.reopen_with(policy)) as Box<dyn Sink> })
        }),
        oversize: Some(Oversize::Value(64 * 1024 + 1)),
    };
    run_all(&mut sink, &subject, "memdb").await;
}
