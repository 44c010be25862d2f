//! `cargo fuzz run segments`: arbitrary bytes as segments into connections in every state.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tcpfront::engine::fuzz::run(data);
});
