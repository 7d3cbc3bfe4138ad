#!/usr/bin/env python3
"""Regenerate the character tables at the end of src/text/tokenizer.rs.

transformers' CLIPTokenizer runs on the `tokenizers` library, whose regexes use Oniguruma and
whose NFC uses Unicode 9 tables (crate unicode-normalization-alignments 0.1.12). Our regex and
unicode-normalization crates follow newer Unicode versions, so the tokenizer embeds:

  LETTER, NUMBER, SPACE  `\\p{L}`, `\\p{N}`, `\\s` exactly as Oniguruma matches them, read from the
                         installed `tokenizers` Python package;
  NFC_OPAQUE             the code points on which Unicode-9 NFC and unicode-normalization (the
                         version in Cargo.lock) disagree: new combining classes / decompositions,
                         and starters of compositions Unicode 9 did not know. Computed by a
                         throw-away Cargo project comparing both crates (needs cargo and the two
                         crates reachable by cargo).

Usage: python gen_unicode_tables.py [--unicode-normalization 0.1.26] > tables.rs
Paste the output over the generated section of src/text/tokenizer.rs.
"""

import argparse
import os
import subprocess
import sys
import tempfile

from tokenizers import Regex, normalizers

NFC_PROGRAM = r"""
use unicode_normalization as new;
use unicode_normalization_alignments as old;
fn main() {
    let mut out: Vec<u32> = Vec::new();
    for cp in 0u32..0x110000 {
        let Some(c) = char::from_u32(cp) else { continue };
        let s = c.to_string();
        let new_nfd: String = new::UnicodeNormalization::nfd(s.as_str()).collect();
        let old_nfd: String = old::UnicodeNormalization::nfd(s.chars()).map(|(c, _)| c).collect();
        let new_nfc: String = new::UnicodeNormalization::nfc(s.as_str()).collect();
        let old_nfc: String = old::UnicodeNormalization::nfc(s.chars()).map(|(c, _)| c).collect();
        let new_ccc = new::char::canonical_combining_class(c);
        let old_ccc = old::char::canonical_combining_class(c);
        let recomposed_old: String =
            old::UnicodeNormalization::nfc(new_nfd.chars()).map(|(c, _)| c).collect();
        let recomposed_new: String = new::UnicodeNormalization::nfc(new_nfd.as_str()).collect();
        if new_nfd != old_nfd || new_nfc != old_nfc || new_ccc != old_ccc {
            out.push(cp);
        }
        if recomposed_old != recomposed_new {
            // A composition Unicode 9 lacks: its starters (ccc 0 there) are opaque.
            out.extend(new_nfd.chars().filter(|&d| old::char::canonical_combining_class(d) == 0).map(u32::from));
        }
    }
    out.sort_unstable();
    out.dedup();
    for cp in out { println!("{cp}"); }
}
"""


def ranges(codepoints):
    out = []
    for cp in codepoints:
        if out and out[-1][1] + 1 == cp:
            out[-1][1] = cp
        else:
            out.append([cp, cp])
    return out


def oniguruma_class(pattern):
    cps = [i for i in range(0x110000) if not (0xD800 <= i < 0xE000)]
    text = "".join(map(chr, cps))
    marker = "\U0010FFFF"  # a noncharacter, in none of the classes
    replaced = normalizers.Replace(Regex(pattern), marker).normalize_str(text)
    assert len(replaced) == len(text)
    return [cp for cp, ch in zip(cps, replaced) if ch == marker and cp != 0x10FFFF]


def nfc_opaque(version):
    with tempfile.TemporaryDirectory() as tmp:
        os.makedirs(os.path.join(tmp, "src"))
        with open(os.path.join(tmp, "Cargo.toml"), "w") as f:
            f.write(
                '[package]\nname = "nfc-opaque"\nversion = "0.0.0"\nedition = "2021"\n'
                f'[dependencies]\nunicode-normalization = "={version}"\n'
                'unicode-normalization-alignments = "=0.1.12"\n'
            )
        with open(os.path.join(tmp, "src", "main.rs"), "w") as f:
            f.write(NFC_PROGRAM)
        out = subprocess.run(
            ["cargo", "run", "--release", "-q"], cwd=tmp, check=True, capture_output=True, text=True
        ).stdout
    return [int(line) for line in out.split()]


def emit(name, doc, rs):
    lines = [f"/// {doc}", "#[rustfmt::skip]", f"const {name}: &[(u32, u32)] = &["]
    line = "   "
    for a, b in rs:
        item = f" (0x{a:X}, 0x{b:X}),"
        if len(line) + len(item) > 99:
            lines.append(line)
            line = "   "
        line += item
    lines += [line, "];"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--unicode-normalization", default="0.1.26")
    args = ap.parse_args()
    parts = [
        emit("LETTER", "`\\p{L}` as Oniguruma (inside `tokenizers`) sees it.", ranges(oniguruma_class(r"\p{L}"))),
        emit("NUMBER", "`\\p{N}` as Oniguruma sees it.", ranges(oniguruma_class(r"\p{N}"))),
        emit("SPACE", "`\\s` as Oniguruma sees it.", ranges(oniguruma_class(r"\s"))),
        emit(
            "NFC_OPAQUE",
            "Characters on which Unicode 9 NFC (`tokenizers`' normalizer) and our NFC differ.",
            ranges(nfc_opaque(args.unicode_normalization)),
        ),
    ]
    sys.stdout.write("\n\n".join(parts) + "\n")


if __name__ == "__main__":
    main()
