"""Writes the seed corpus of the fuzz targets from the requests the
conformance tests send: every Rust string literal in tests/http_conformance.rs,
tests/bad_input.rs and tests/independent_parsers.rs that begins with a
method, unescaped, becomes a seed of each target (with a zero prefix for
the targets that read cut positions first). Usage: python3 fuzz/seeds.py"""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = ["tests/http_conformance.rs", "tests/bad_input.rs", "tests/independent_parsers.rs"]
METHODS = ("GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "CONNECT ", "post ", "\\r\\n")
# A plain or byte string literal, possibly continued over lines with `\`.
LITERAL = re.compile(r'b?"((?:[^"\\]|\\.|\\\n)*)"', re.S)


def unescape(text: str) -> bytes:
    text = re.sub(r"\\\n\s*", "", text)
    out = bytearray()
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        nxt = text[i + 1]
        if nxt in "rnt0\\\"'":
            out += {"r": b"\r", "n": b"\n", "t": b"\t", "0": b"\0", "\\": b"\\", '"': b'"', "'": b"'"}[nxt]
            i += 2
        elif nxt == "x":
            out.append(int(text[i + 2 : i + 4], 16))
            i += 4
        elif nxt == "u":
            end = text.index("}", i)
            out += chr(int(text[i + 3 : end], 16)).encode()
            i = end + 1
        else:
            out += nxt.encode()
            i += 2
    return bytes(out)


seeds = set()
for source in SOURCES:
    for match in LITERAL.finditer((ROOT / source).read_text()):
        if match.group(1).startswith(METHODS):
            seeds.add(unescape(match.group(1)))
for target, prefix in [("head", b""), ("chunked", b"\0\0\0\0"), ("connection", b"\0\0\0")]:
    corpus = ROOT / "fuzz" / "corpus" / target
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(sorted(seeds)):
        body = seed.split(b"\r\n\r\n", 1)[-1] if target == "chunked" else seed
        (corpus / f"seed-{number:03}").write_bytes(prefix + body)
print(f"{len(seeds)} seeds for head, chunked and connection")
