#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| latent_studio::fuzz_entry::a1111_prompt(data));
