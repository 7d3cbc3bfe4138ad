#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| latent_studio::fuzz_entry::single_file_detector(data));
