//! From a prompt to text conditioning: CLIP tokenization, A1111 prompt syntax (emphasis,
//! `BREAK`, `<lora:…>` tags, chunking past 75 tokens), textual-inversion embeddings and the
//! text encoders' hidden states as the UNet takes them.

pub mod conditioning;
pub mod embeddings;
pub mod prompt;
pub mod tokenizer;
